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

import numpy as np

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
            if name == "arrival" and not values <= set(rollups.ARRIVALS):
                raise BadRequest(f"arrival must be one or more of {', '.join(rollups.ARRIVALS)}")
            filters[name] = values
    return start.isoformat(), end.isoformat(), filters


def matches(dims: rollups.Dims, filters: dict[str, frozenset[str]]) -> bool:
    """Whether a rollup's dimensions pass every filter."""
    return all(getattr(dims, name) in values for name, values in filters.items())


def quantile(cumulative: np.ndarray, q: float) -> float | None:
    """The nearest-rank ``q`` quantile's bucket middle, from one histogram's cumulative bucket
    counts (index 0 is ``rollups.MIN_BUCKET``); ``None`` for an empty histogram."""
    total = int(cumulative[-1]) if len(cumulative) else 0
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    index = int(np.searchsorted(cumulative, rank))
    return rollups.bucket_mid(index + rollups.MIN_BUCKET)


def distribution(hist: np.ndarray, name: str, with_buckets: bool = True) -> dict[str, Any] | None:
    """Count, quantiles and buckets of one histogram, in the figure's own units."""
    if not hist.any():
        return None
    label, to_figure = _FIGURES[name]
    reverse = name in _REVERSED
    cumulative = np.cumsum(hist)
    out: dict[str, Any] = {"count": int(cumulative[-1])}
    for q in QUANTILES:
        v = quantile(cumulative, 1 - q if reverse else q)
        out[f"p{round(q * 100)}"] = None if v is None else round(to_figure(v), 6)
    if with_buckets:
        buckets = []
        for i in np.flatnonzero(hist).tolist():
            lo, hi = rollups.bucket_bounds(i + rollups.MIN_BUCKET)
            lo_f, hi_f = sorted((to_figure(lo), to_figure(hi)))
            buckets.append({"lo": round(lo_f, 6), "hi": round(hi_f, 6), "count": int(hist[i])})
        out["buckets"] = buckets
    return out


def _sums(c: np.ndarray | list[int]) -> dict[str, Any]:
    """The API's sums from one row of the ``SUM_KEYS`` columns."""
    n, bytes_in, bytes_out, engine_us, service_us, timed = (int(x) for x in c)
    return {"jobs": n, "bytes_in": bytes_in, "bytes_out": bytes_out, "engine_ms": engine_us / 1000,
            "processor_ms": service_us / 1000, "timed_jobs": timed}


def _grouped(keys: list[Any], per_row: np.ndarray) -> dict[Any, np.ndarray]:
    """``per_row`` (one row per dims) summed per key (``keys[i]`` is row ``i``'s)."""
    index: dict[Any, int] = {}
    ids = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, len(keys))
    out = np.zeros((len(index), per_row.shape[1]), np.int64)
    np.add.at(out, ids, per_row)
    return {k: out[i] for k, i in index.items()}


def answer(data: rollups.Cells | dict[rollups.Dims, Counter[str]], day_from: str, day_to: str,
           filters: dict[str, frozenset[str]]) -> dict[str, Any]:
    """The ``GET /stats`` body for rollup cells (or named counters per dims, as a full scan's
    totals in tests). Sums are exact integer sums (numpy ``int64``)."""
    cells = data if isinstance(data, rollups.Cells) else rollups.Cells.from_counters(data)
    dims, n_sums, n_dims = cells.dims, len(rollups.SUM_KEYS), len(cells.dims)
    nonzero = np.zeros(n_dims, bool)
    nonzero[cells.row[cells.value != 0]] = True
    keep = np.fromiter((matches(d, filters) for d in dims), bool, n_dims) & nonzero
    sel = keep[cells.row]
    row, col, val = cells.row[sel], cells.column[sel], cells.value[sel]
    is_sum = col < n_sums
    sums = np.zeros((n_dims, n_sums), np.int64)
    np.add.at(sums, (row[is_sum], col[is_sum]), val[is_sum])
    kept = np.flatnonzero(keep).tolist()
    kept_dims = [dims[i] for i in kept]
    kept_sums = sums[kept] if kept else np.zeros((0, n_sums), np.int64)
    everything = kept_sums.sum(axis=0)
    by_status = _grouped([d.status for d in kept_dims], kept_sums)
    by_day = _grouped([(d.day, d.status) for d in kept_dims], kept_sums)
    groups = _grouped([(d.status, d.format, d.preset, d.arrival) for d in kept_dims], kept_sums)
    ok_formats = sorted({d.format for d in kept_dims if d.status == "succeeded"})
    fmt_of = {f: i for i, f in enumerate(ok_formats)}
    row_fmt = np.array([fmt_of.get(d.format, -1) if d.status == "succeeded" else -1 for d in dims] or [-1],
                       np.int64)
    is_hist = (col >= rollups.HIST_BASE) & (col < rollups.FIXED_COLUMNS) & (row_fmt[row] >= 0)
    hists = np.zeros((len(ok_formats), rollups.FIXED_COLUMNS - rollups.HIST_BASE), np.int64)
    np.add.at(hists, (row_fmt[row[is_hist]], col[is_hist] - rollups.HIST_BASE), val[is_hist])
    ok = hists.sum(axis=0)
    is_err = col >= rollups.FIXED_COLUMNS
    err = np.zeros(len(cells.codes), np.int64)
    np.add.at(err, col[is_err] - rollups.FIXED_COLUMNS, val[is_err])
    errors = Counter({code: int(n) for code, n in zip(cells.codes, err.tolist(), strict=True) if n})
    ok_sums = by_status.get("succeeded", np.zeros(n_sums, np.int64))
    fmt_sums = _grouped([d.format for d in kept_dims if d.status == "succeeded"],
                        kept_sums[[d.status == "succeeded" for d in kept_dims]] if kept_dims else kept_sums)

    def hist(h: np.ndarray, name: str) -> np.ndarray:
        start = rollups.HIST_NAMES.index(name) * rollups.N_BUCKETS
        return h[start:start + rollups.N_BUCKETS]

    totals_out = {**_sums(everything), "succeeded": int(by_status.get("succeeded", [0])[0]),
                  "failed": int(by_status.get("failed", [0])[0]),
                  "bytes_saved": int(ok_sums[1] - ok_sums[2])}
    return {
        "from": day_from,
        "to": day_to,
        "filters": {k: sorted(v) for k, v in filters.items()},
        "totals": totals_out,
        "days": [{"day": d, "status": st, **_sums(c)} for (d, st), c in sorted(by_day.items()) if c[0]],
        "groups": [{"status": k[0], "format": k[1], "preset": k[2], "arrival": k[3], **_sums(c)}
                   for k, c in sorted(groups.items()) if c[0]],
        "errors": [{"code": code, "jobs": n} for code, n in errors.most_common()],
        "distributions": {_FIGURES[name][0]: dist for name in rollups.HISTOGRAMS
                          if (dist := distribution(hist(ok, name), name)) is not None},
        "by_format": {fmt: {"jobs": int(fmt_sums[fmt][0]), "bytes_in": int(fmt_sums[fmt][1]),
                            "bytes_out": int(fmt_sums[fmt][2]),
                            **{_FIGURES[n][0]: distribution(hist(hists[fmt_of[fmt]], n), n,
                                                            with_buckets=False)
                               for n in ("ratio", "bpp", "dssim")}}
                      for fmt in ok_formats},
        "dimensions": {name: sorted({getattr(dims[i], name) for i in np.flatnonzero(nonzero).tolist()})
                       for name in FILTERS},
        "bucket_error": round(rollups.BUCKET_ERROR, 6),
        "quantile_note": (
            "quantiles come from log-bucket histograms (4 buckets per doubling): each is the "
            f"geometric middle of its bucket, within ±{rollups.BUCKET_ERROR * 100:.2f}% of the exact "
            "nearest-rank value (of 1 − SSIM for ssim, of 100 − score for ssimulacra2); "
            "counts and sums are exact"),
    }


@translate_aws_errors
def get_stats(backend: Backend, query: dict[str, str] | None) -> dict[str, Any]:
    """``GET /stats``: read the range's rollups (sealed day items + live items) and answer."""
    day_from, day_to, filters = parse_filters(query)
    read = rollups.read(backend.records.table, day_from, day_to)
    body = answer(read.cells, day_from, day_to, filters)
    body["source"] = {"day_items": read.day_items, "live_items": read.live_items}
    return body
