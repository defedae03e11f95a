"""``GET /stats``: History's figures from the rollups (``service/rollups.py``), in time
proportional to the number of days asked for, never to the number of jobs.

Counts and sums are exact. Quantiles come from the fixed log-bucket histograms: the value
reported is the geometric middle of the bucket that holds the nearest-rank quantile, so it is
within ``rollups.BUCKET_ERROR`` (±9.05 %) of the exact one, relatively (for SSIM the error
applies to 1 − SSIM, for SSIMULACRA2 to 100 − score).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from imagepipe.errors import BadRequest
from imagepipe.service import rollups
from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.backend import Backend

DEFAULT_DAYS = 30
MAX_DAYS = 3660
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VALUE_RE = re.compile(r"^[^\x00-\x1f]{1,100}$")
FILTERS = ("status", "format", "preset", "arrival")
#: histogram name -> (the API's name for it, how a bucket value maps to the figure)
_FIGURES = {
    "ratio": ("compression_ratio", lambda v: v),
    "bpp": ("bits_per_pixel", lambda v: v),
    "dssim": ("ssim", lambda v: 1.0 - v),
    "s2gap": ("ssimulacra2", lambda v: 100.0 - v),
    **{f"t_{s}": (f"ms_{s}", lambda v: v) for s in rollups.STAGES},
}
_REVERSED = {"dssim", "s2gap"}  # a higher histogram value is a lower figure
_SUM_KEYS = ("n", "bytes_in", "bytes_out", "engine_us", "service_us", "timed")


def _day(raw: str | None, name: str, default: date) -> date:
    if raw is None or raw == "":
        return default
    if not _DAY_RE.match(raw):
        raise BadRequest(f"{name} must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} is not a valid date: {raw!r}") from None


def parse_filters(query: dict[str, str] | None,
                  default_days: int = DEFAULT_DAYS) -> tuple[str, str, dict[str, frozenset[str]]]:
    """``(from, to, filters)`` from the query string: ``from``/``to`` (``YYYY-MM-DD``, UTC,
    inclusive; default the last ``default_days`` days), and comma-separated ``status``, ``format``,
    ``preset``, ``arrival`` (a missing preset is ``none``)."""
    query = query or {}
    today = datetime.now(UTC).date()
    end = _day(query.get("to"), "to", today)
    start = _day(query.get("from"), "from", end - timedelta(days=default_days - 1))
    if start > end:
        raise BadRequest("from must not be after to")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadRequest(f"a range is at most {MAX_DAYS} days")
    filters: dict[str, frozenset[str]] = {}
    for name in FILTERS:
        raw = query.get(name)
        if raw:
            values = frozenset(v.strip() for v in raw.split(",") if v.strip())
            if not values or len(values) > 50 or not all(_VALUE_RE.match(v) for v in values):
                raise BadRequest(f"{name} must be a comma-separated list of values")
            filters[name] = values
    return start.isoformat(), end.isoformat(), filters


def matches(dims: rollups.Dims, filters: dict[str, frozenset[str]]) -> bool:
    """Whether a rollup's dimensions pass every filter."""
    return all(getattr(dims, name) in values for name, values in filters.items())


def histogram(counters: Counter[str], name: str) -> dict[int, int]:
    """``{bucket: count}`` of one histogram in summed counters."""
    prefix = f"h:{name}:"
    return {int(k[len(prefix):]): v for k, v in counters.items() if k.startswith(prefix) and v > 0}


def quantile(hist: dict[int, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile's bucket middle (``None`` for an empty histogram)."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return rollups.bucket_mid(bucket)
    return rollups.bucket_mid(max(hist))


def distribution(counters: Counter[str], name: str) -> dict[str, Any] | None:
    """Count, quantiles and buckets of one histogram, in the figure's own units."""
    hist = histogram(counters, name)
    if not hist:
        return None
    label, to_figure = _FIGURES[name]
    reverse = name in _REVERSED
    out: dict[str, Any] = {"count": sum(hist.values())}
    for q in QUANTILES:
        v = quantile(hist, 1 - q if reverse else q)
        out[f"p{round(q * 100)}"] = None if v is None else round(to_figure(v), 6)
    buckets = []
    for b in sorted(hist):
        lo, hi = rollups.bucket_bounds(b)
        lo_f, hi_f = sorted((to_figure(lo), to_figure(hi)))
        buckets.append({"lo": round(lo_f, 6), "hi": round(hi_f, 6), "count": hist[b]})
    out["buckets"] = buckets
    return out


def _sums(c: Counter[str]) -> dict[str, Any]:
    return {
        "jobs": c["n"],
        "bytes_in": c["bytes_in"],
        "bytes_out": c["bytes_out"],
        "engine_ms": c["engine_us"] / 1000,
        "processor_ms": c["service_us"] / 1000,
        "timed_jobs": c["timed"],
    }


def answer(totals: dict[rollups.Dims, Counter[str]], day_from: str, day_to: str,
           filters: dict[str, frozenset[str]]) -> dict[str, Any]:
    """The ``GET /stats`` body for rollup totals (also used on a full scan's totals by tests)."""
    everything: Counter[str] = Counter()  # the sums and error codes (histograms: ``ok`` only)
    by_status: Counter[str] = Counter()
    by_day: dict[tuple[str, str], Counter[str]] = {}
    groups: dict[tuple[str, str, str, str], Counter[str]] = {}
    by_format: dict[str, Counter[str]] = {}
    ok: Counter[str] = Counter()
    for dims, c in totals.items():
        if not matches(dims, filters):
            continue
        sums = {k: c[k] for k in _SUM_KEYS if c.get(k)}
        everything.update(sums)
        by_status[dims.status] += c.get("n", 0)
        by_day.setdefault((dims.day, dims.status), Counter()).update(sums)
        groups.setdefault((dims.status, dims.format, dims.preset, dims.arrival), Counter()).update(sums)
        if dims.status == "succeeded":  # histograms: merged per format, then the few formats
            if dims.format in by_format:
                by_format[dims.format].update(c)
            else:
                by_format[dims.format] = Counter(c)
        else:
            everything.update({k: v for k, v in c.items() if k.startswith("e:")})
    for per_format in by_format.values():
        ok.update(per_format)
    failed = by_status["failed"]
    totals_out = {**_sums(everything), "succeeded": by_status["succeeded"], "failed": failed,
                  "bytes_saved": ok["bytes_in"] - ok["bytes_out"]}
    errors = Counter({k[2:]: v for k, v in everything.items() if k.startswith("e:") and v})
    return {
        "from": day_from,
        "to": day_to,
        "filters": {k: sorted(v) for k, v in filters.items()},
        "totals": totals_out,
        "days": [{"day": d, "status": s, **_sums(c)} for (d, s), c in sorted(by_day.items()) if c["n"]],
        "groups": [{"status": k[0], "format": k[1], "preset": k[2], "arrival": k[3], **_sums(c)}
                   for k, c in sorted(groups.items()) if c["n"]],
        "errors": [{"code": code, "jobs": n} for code, n in errors.most_common()],
        "distributions": {_FIGURES[name][0]: dist for name in rollups.HISTOGRAMS
                          if (dist := distribution(ok, name)) is not None},
        "by_format": {fmt: {"jobs": c["n"], "bytes_in": c["bytes_in"], "bytes_out": c["bytes_out"],
                            **{_FIGURES[n][0]: _quantiles_only(distribution(c, n))
                               for n in ("ratio", "bpp", "dssim")}}
                      for fmt, c in sorted(by_format.items())},
        "dimensions": {name: sorted({getattr(d, name) for d in totals}) for name in FILTERS},
        "bucket_error": round(rollups.BUCKET_ERROR, 6),
        "quantile_note": (
            "quantiles come from log-bucket histograms (4 buckets per doubling): each is the "
            f"geometric middle of its bucket, within ±{rollups.BUCKET_ERROR * 100:.2f}% of the exact "
            "nearest-rank value (of 1 − SSIM for ssim, of 100 − score for ssimulacra2); "
            "counts and sums are exact"),
    }


def _quantiles_only(dist: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if dist is None else {k: v for k, v in dist.items() if k != "buckets"}


@translate_aws_errors
def get_stats(backend: Backend, query: dict[str, str] | None) -> dict[str, Any]:
    """``GET /stats``: read the range's rollups (sealed day items + live items) and answer."""
    day_from, day_to, filters = parse_filters(query)
    read = rollups.read(backend.records.table, day_from, day_to)
    body = answer(read.totals, day_from, day_to, filters)
    body["source"] = {"day_items": read.day_items, "live_items": read.live_items}
    return body
