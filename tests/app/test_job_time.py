"""The dashboard's words for a job's time budget (pages/ui/job_time.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pages.ui.job_time import adaptation_text, budget_progress, skipped_text, time_failure_hint

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def test_a_running_job_shows_elapsed_time_against_its_budget():
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    job = {"status": "running", "attempts": 1, "started_at": start.strftime(ISO),
           "attempt_deadline_at": (start + timedelta(seconds=60)).strftime(ISO)}
    frac, text = budget_progress(job, now=start + timedelta(seconds=15))
    assert frac == 0.25 and text == "15 s of its 60 s time budget"
    frac, text = budget_progress({**job, "attempts": 2}, now=start + timedelta(seconds=90))
    assert frac == 1.0 and text.endswith("attempt 2")
    # no deadline on the record (no budget), or not running: nothing to show
    assert budget_progress({**job, "attempt_deadline_at": None}) is None
    assert budget_progress({**job, "status": "queued"}) is None


def test_the_adaptation_and_skipped_candidates_in_words():
    job = {"facts": {"budget": {"adapted": {"field": "avif.speed", "from": 6, "to": 9,
                                            "estimate_ms": {"asked": 32000.0, "adapted": 4000.0},
                                            "left_ms": 18000.0}}}}
    assert adaptation_text(job) == ("Adapted to fit the time budget: avif.speed 6 → 9 "
                                    "(estimated 32 s → 4.0 s, 18 s left).")
    assert adaptation_text({"facts": {"budget": {"setting": 6}}}) is None
    best = {"facts": {"search": {"per_format": {"jpeg": {"quality": 80},
                                                "avif": {"skipped": "avif encoding needs ≈ 40 s"}}}}}
    assert skipped_text(best) == "Skipped for time: avif (avif encoding needs ≈ 40 s)"
    assert skipped_text({}) is None


def test_failures_for_time_get_a_hint():
    for code in ("over_time_budget", "over_memory_budget", "timeout", "attempt_killed"):
        assert time_failure_hint(code)
    assert time_failure_hint("corrupt_image") is None
