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
    """``per_row`` (one row per key in ``keys``, repeats allowed) summed per key."""
    index: dict[Any, int] = {}
    ids = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, len(keys))
    out = np.zeros((len(index), per_row.shape[1]), np.int64)
    np.add.at(out, ids, per_row)
    return {k: out[i] for k, i in index.items()}


#: the largest (combinations × counters) matrix built at once; more combinations go in slices
_DENSE_MAX = 4_000_000


def _per_combo(combo: np.ndarray, column: np.ndarray, value: np.ndarray, n_combos: int,
               n_columns: int) -> np.ndarray:
    """``value`` summed per ``(combo, column)``: an ``int64`` matrix, combinations × columns.

    One ``bincount`` over the cells (float64 sums, exact while the cells' absolute values sum to
    less than 2**53; beyond that, ``numpy.add.at`` in int64)."""
    out = np.zeros((n_combos, n_columns), np.int64)
    exact_in_float = float(np.abs(value).sum()) < 2.0**53
    step = max(1, _DENSE_MAX // max(1, n_columns))
    for start in range(0, n_combos, step):
        if n_combos <= step:
            c, col, val = combo, column, value
        else:
            m = (combo >= start) & (combo < start + step)
            c, col, val = combo[m], column[m], value[m]
        n = min(step, n_combos - start)
        key = (c - start) * n_columns + col
        if exact_in_float:
            part = np.rint(np.bincount(key, weights=val, minlength=n * n_columns)).astype(np.int64)
        else:
            part = np.zeros(n * n_columns, np.int64)
            np.add.at(part, key, val)
        out[start:start + n] = part.reshape(n, n_columns)
    return out


def _most_first(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def answer(data: rollups.Cells | dict[rollups.Dims, Counter[str]], day_from: str, day_to: str,
           filters: dict[str, frozenset[str]]) -> dict[str, Any]:
    """The ``GET /stats`` body for rollup cells (or named counters per dims, as a full scan's
    totals in tests). Sums are exact integer sums (numpy ``int64``).

    Python touches each row (a day × combination) once, to number its day and combination;
    the rest is numpy over the cells, and Python again only per combination (a few hundred)."""
    cells = data if isinstance(data, rollups.Cells) else rollups.Cells.from_counters(data)
    n_sums, width = len(rollups.SUM_KEYS), rollups.FIXED_COLUMNS - rollups.HIST_BASE
    combo_ix: dict[tuple[str, str, str, str], int] = {}
    day_ix: dict[str, int] = {}
    row_combo = np.fromiter((combo_ix.setdefault((d.status, d.format, d.preset, d.arrival), len(combo_ix))
                             for d in cells.dims), np.int64, len(cells.dims))
    row_day = np.fromiter((day_ix.setdefault(d.day, len(day_ix)) for d in cells.dims), np.int64,
                          len(cells.dims))
    combos = list(combo_ix)
    statuses = sorted({c[0] for c in combos})
    combo_status = np.array([statuses.index(c[0]) for c in combos] or [0], np.int64)
    keep_combo = np.array([matches(rollups.Dims("", *c), filters) for c in combos] or [False], bool)
    dense = _per_combo(row_combo[cells.row], cells.column, cells.value, len(combos),
                       rollups.FIXED_COLUMNS + len(cells.codes))
    present = [bool(dense[i].any()) for i in range(len(combos))]
    kept = [i for i in range(len(combos)) if keep_combo[i] and present[i]]
    by_combo = dense[:, :n_sums]
    everything = by_combo[kept].sum(axis=0) if kept else np.zeros(n_sums, np.int64)
    by_status = _grouped([combos[i][0] for i in kept], by_combo[kept]) if kept else {}
    ok_formats = sorted({combos[i][1] for i in kept if combos[i][0] == "succeeded"})
    fmt_of = {f: i for i, f in enumerate(ok_formats)}
    fmt_sums = {f: np.zeros(n_sums, np.int64) for f in ok_formats}
    hists = np.zeros((len(ok_formats), width), np.int64)
    for i in kept:
        if combos[i][0] == "succeeded":
            fmt_sums[combos[i][1]] += by_combo[i]
            hists[fmt_of[combos[i][1]]] += dense[i, rollups.HIST_BASE:rollups.FIXED_COLUMNS]
    ok = hists.sum(axis=0)
    err = dense[kept, rollups.FIXED_COLUMNS:].sum(axis=0) if kept else np.zeros(len(cells.codes), np.int64)
    errors = Counter({code: int(n) for code, n in zip(cells.codes, err.tolist(), strict=True) if n})
    ok_sums = by_status.get("succeeded", np.zeros(n_sums, np.int64))
    # per day and status: the sum columns of each row (a day × combination), a small part of the cells
    is_sum = cells.column < n_sums
    s_row, s_col, s_val = cells.row[is_sum], cells.column[is_sum], cells.value[is_sum]
    s_keep = keep_combo[row_combo[s_row]] if len(s_row) else np.zeros(0, bool)
    s_row, s_col, s_val = s_row[s_keep], s_col[s_keep], s_val[s_keep]
    n_status = max(1, len(statuses))
    by_day_status = np.zeros((len(day_ix) * n_status, n_sums), np.int64)
    np.add.at(by_day_status, (row_day[s_row] * n_status + combo_status[row_combo[s_row]], s_col), s_val)
    day_rows = [(day, st, by_day_status[day_ix[day] * n_status + j]) for day in sorted(day_ix)
                for j, st in enumerate(statuses)]

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
        "days": [{"day": d, "status": st, **_sums(c)} for d, st, c in day_rows if c[0]],
        "groups": [{"status": k[0], "format": k[1], "preset": k[2], "arrival": k[3], **_sums(by_combo[i])}
                   for k, i in sorted(combo_ix.items()) if i in kept and by_combo[i][0]],
        "errors": [{"code": code, "jobs": n} for code, n in sorted(errors.items(), key=_most_first)],
        "distributions": {_FIGURES[name][0]: dist for name in rollups.HISTOGRAMS
                          if (dist := distribution(hist(ok, name), name)) is not None},
        "by_format": {fmt: {"jobs": int(fmt_sums[fmt][0]), "bytes_in": int(fmt_sums[fmt][1]),
                            "bytes_out": int(fmt_sums[fmt][2]),
                            **{_FIGURES[n][0]: distribution(hist(hists[fmt_of[fmt]], n), n,
                                                            with_buckets=False)
                               for n in ("ratio", "bpp", "dssim")}}
                      for fmt in ok_formats},
        "dimensions": {name: sorted({c[i] for c, p in zip(combos, present, strict=True) if p})
                       for i, name in enumerate(FILTERS)},
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
