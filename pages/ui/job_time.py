"""A job's time budget in words (issue 18): a running job's elapsed time against its budget,
the adaptation made to fit it, and what to change when a job was refused or stopped for time.

Pure functions of the job record the API returns (no Streamlit): ``started_at`` and
``attempt_deadline_at`` (the running attempt's invocation deadline), ``facts.budget`` and
``error.code``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: error codes of work that did not fit its invocation's time (core/budget.py, service/jobs.py)
TIME_CODES = frozenset({"over_time_budget", "over_memory_budget", "timeout", "attempt_killed"})
_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def _parse(iso: Any) -> datetime | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.strptime(iso, _ISO).replace(tzinfo=UTC)
    except ValueError:
        return None


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def budget_progress(job: dict[str, Any], now: datetime | None = None) -> tuple[float, str] | None:
    """``(fraction of the budget used, "12 s of 60 s budget")`` for a running job whose attempt
    has a deadline; None otherwise."""
    if job.get("status") != "running":
        return None
    started, deadline = _parse(job.get("started_at")), _parse(job.get("attempt_deadline_at"))
    if started is None or deadline is None or deadline <= started:
        return None
    now = now or datetime.now(UTC)
    total = (deadline - started).total_seconds()
    elapsed = max(0.0, (now - started).total_seconds())
    attempt = job.get("attempts")
    tail = f", attempt {attempt}" if attempt and int(attempt) > 1 else ""
    return min(1.0, elapsed / total), f"{_secs(elapsed)} of its {_secs(total)} time budget{tail}"


def adaptation_text(job: dict[str, Any]) -> str | None:
    """The setting changed to fit the time budget (``facts.budget.adapted``), in words."""
    facts = job.get("facts") or {}
    adapted = (facts.get("budget") or {}).get("adapted")
    if not adapted:
        return None
    est = adapted.get("estimate_ms") or {}
    asked, got = est.get("asked"), est.get("adapted")
    times = ""
    if isinstance(asked, (int, float)) and isinstance(got, (int, float)):
        times = f" (estimated {_secs(asked / 1000)} → {_secs(got / 1000)}"
        left = adapted.get("left_ms")
        times += f", {_secs(left / 1000)} left)" if isinstance(left, (int, float)) else ")"
    return (f"Adapted to fit the time budget: {adapted.get('field')} {adapted.get('from')} → "
            f"{adapted.get('to')}{times}.")


def skipped_text(job: dict[str, Any]) -> str | None:
    """Candidate formats ``best`` / auto quality skipped for time, in words."""
    per_format = ((job.get("facts") or {}).get("search") or {}).get("per_format") or {}
    skipped = [f"{fmt} ({row['skipped']})" for fmt, row in per_format.items() if row.get("skipped")]
    return "Skipped for time: " + "; ".join(skipped) if skipped else None


def time_failure_hint(code: str | None) -> str | None:
    """What a failure for time means, for the error card (the message itself says what to change)."""
    if code == "over_time_budget":
        return "Refused before encoding: no setting of this format fits the processor's time limit."
    if code == "over_memory_budget":
        return "Refused before encoding: it needs more memory than the processor has free."
    if code == "timeout":
        return "Stopped at the processor's time limit; it is not retried (the same work would stop again)."
    if code == "attempt_killed":
        return "An earlier attempt was killed (time or memory limit); it is not rerun blindly."
    return None
