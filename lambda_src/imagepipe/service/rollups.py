"""Rollups: what History and ``GET /stats`` read instead of every job.

Every job that reaches a terminal state (``succeeded`` or ``failed``) adds its *contribution*
to one aggregate item, in the same DynamoDB transaction as its conditional terminal transition
(``Records.succeed_job`` / ``fail_job``): when the transition is refused (a duplicate or a
reordered delivery, the job already terminal or deleted) the add is refused with it, so every
job is counted exactly once. Deleting an image subtracts its terminal jobs the same way.

A contribution is integers only (exact sums, no float drift), keyed by :class:`Dims`
(day × status × output format × preset × way in):

- counters: ``n`` (jobs), ``bytes_in``, ``bytes_out``, ``engine_us`` / ``service_us`` (engine
  and processor time in µs), ``timed`` (jobs with a processor time), ``e:{code}``
  (failed jobs per error code);
- histograms ``h:{name}:{bucket}`` = 1 for the log bucket the job's value falls in (compression
  ratio, bits per pixel, 1 − SSIM, 100 − SSIMULACRA2, each stage's milliseconds).

Storage (single table, docs/architecture.md):

- *live* items ``pk = ROLLUP#{shard}``, ``sk = {day}#{status}#{format}#{preset}#{arrival}``,
  updated with atomic ``ADD``; the shard (``hash(job_id) % SHARDS``) spreads a burst over
  ``SHARDS`` partition keys and items, so no single counter item takes every write;
- *sealed* day items ``pk = ROLLDAY``, ``sk = {day}``: every combination of one day in one item
  with a version ``ver``, stored as columns (:class:`Cells`: the day's combinations and error
  codes as JSON lists, and one zlib-compressed binary attribute of ``(combination, counter,
  value)`` triples, each array in the narrowest integer type that holds it; format ``fmt = 2``,
  a format-1 item's JSON ``data`` document is still read).
  :func:`seal` folds a day's live items into it in
  transactions (put the day item on its read version, delete each live item on its read
  ``ver``), so nothing is lost or counted twice even while jobs keep finishing. Readers get one
  item per day instead of ``combinations × shards`` typed items.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import struct
import threading
import time
import uuid
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from imagepipe.errors import TransientError

SHARDS = 4
LIVE_PK = "ROLLUP#"
DAY_PK = "ROLLDAY"
#: histogram resolution: buckets per doubling (bucket i holds [2^(i/4), 2^((i+1)/4)))
STEPS = 4
#: a quantile read from a histogram is the geometric middle of its bucket: within this
#: relative error of the exact (nearest-rank) quantile
BUCKET_ERROR = 2 ** (1 / (2 * STEPS)) - 1
MIN_BUCKET, MAX_BUCKET = -30 * STEPS, 40 * STEPS
#: engine stages then the processor's own, as in ``result.timings_ms``
STAGES = ("queue_wait", "download", "decode", "transform", "encode", "metrics", "total", "upload",
          "record", "service_total")
#: histogram name -> what it measures (docs and the API's answer)
HISTOGRAMS: dict[str, str] = {
    "ratio": "compression ratio (input bytes / output bytes)",
    "bpp": "bits per output pixel",
    "dssim": "1 − SSIM (SSIM = 1 − value)",
    "s2gap": "100 − SSIMULACRA2 (SSIMULACRA2 = 100 − value)",
    **{f"t_{s}": f"{s} time, ms" for s in STAGES},
}
DIMENSIONS = ("status", "format", "preset", "arrival")
ARRIVALS = ("presigned", "direct", "drop")
NO_PRESET = "none"
_SEAL_CHUNK = 90  # live items per sealing transaction (DynamoDB allows 100 items)
#: the counters every combination may have, in column order: the sums, then each histogram's
#: buckets ``MIN_BUCKET..MAX_BUCKET``; error codes ``e:{code}`` follow, numbered per read
SUM_KEYS = ("n", "bytes_in", "bytes_out", "engine_us", "service_us", "timed")
N_BUCKETS = MAX_BUCKET - MIN_BUCKET + 1
HIST_NAMES = tuple(HISTOGRAMS)
HIST_BASE = len(SUM_KEYS)
FIXED_COLUMNS = HIST_BASE + len(HIST_NAMES) * N_BUCKETS
DAY_FORMAT = 2


@dataclass(frozen=True, order=True)
class Dims:
    """The key of an aggregate: the day the job was created (UTC) and its four dimensions."""

    day: str
    status: str
    format: str
    preset: str
    arrival: str

    def sk(self) -> str:
        """The live item's sort key (each part escaped, so a ``#`` in a preset stays inside it)."""
        return "#".join(quote(p, safe="") for p in (self.day, self.status, self.format, self.preset,
                                                     self.arrival))

    @classmethod
    def from_sk(cls, sk: str) -> Dims:
        """Inverse of :meth:`sk`."""
        return cls(*(unquote(p) for p in sk.split("#")))

    def combo(self) -> str:
        """The four dimensions without the day (a key inside a sealed day's document)."""
        return self.sk().split("#", 1)[1]


# --- one job's contribution -------------------------------------------------------------------


def bucket_of(value: float) -> int:
    """The log bucket holding ``value`` (> 0): ``floor(STEPS · log2 value)``, clamped."""
    if not value > 0 or not math.isfinite(value):
        return MIN_BUCKET if not value > 0 else MAX_BUCKET
    return max(MIN_BUCKET, min(MAX_BUCKET, math.floor(STEPS * math.log2(value))))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """``[lo, hi)`` of a bucket."""
    return 2 ** (bucket / STEPS), 2 ** ((bucket + 1) / STEPS)


def bucket_mid(bucket: int) -> float:
    """The geometric middle of a bucket (what a quantile in it is reported as)."""
    return 2 ** ((bucket + 0.5) / STEPS)


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def day_of(job: dict[str, Any]) -> str:
    """The UTC day a job is counted on: its creation day (the job list's date order)."""
    created = str(job.get("created_at") or job.get("finished_at") or "")
    if len(created) >= 10 and created[4] == "-" and created[7] == "-":
        return created[:10]
    return datetime.now(UTC).strftime("%Y-%m-%d")


def output_format(job: dict[str, Any]) -> str:
    """The output format: the result's for a success, else the recipe's request (``original``,
    ``best`` stay as they are), ``unknown`` without either."""
    fmt = (job.get("result") or {}).get("format")
    if not fmt:
        recipe = job.get("recipe")
        if isinstance(recipe, str):
            try:
                recipe = json.loads(recipe)
            except ValueError:
                recipe = None
        fmt = (recipe or {}).get("format") if isinstance(recipe, dict) else None
    return str(fmt or "unknown").lower()


def dims_of(job: dict[str, Any]) -> Dims:
    """Where a terminal job is counted (a missing ``arrival`` is ``presigned``, no preset ``none``)."""
    return Dims(day=day_of(job), status=str(job.get("status")), format=output_format(job),
                preset=str(job.get("preset") or NO_PRESET), arrival=str(job.get("arrival") or "presigned"))


def counters_of(job: dict[str, Any]) -> Counter[str]:
    """A terminal job's contribution: integer counters and one bucket per histogram."""
    out: Counter[str] = Counter(n=1)
    if job.get("status") == "failed":
        code = str((job.get("error") or {}).get("code") or "unknown")
        out[f"e:{code}"] += 1
        return out
    result = job.get("result") or {}
    timings = result.get("timings_ms") or {}
    for name, value in (("bytes_in", result.get("original_bytes")), ("bytes_out", result.get("bytes"))):
        v = _num(value)
        if v is not None:
            out[name] += int(v)
    engine, service = _num(timings.get("total")), _num(timings.get("service_total"))
    if engine is not None:
        out["engine_us"] += round(engine * 1000)
    if service is not None:
        out["service_us"] += round(service * 1000)
        out["timed"] += 1
    ssim, s2 = _num(result.get("ssim")), _num(result.get("ssimulacra2"))
    values = {
        "ratio": _num(result.get("compression_ratio")),
        "bpp": _num(result.get("bits_per_pixel")),
        "dssim": None if ssim is None else max(1e-6, 1.0 - ssim),
        "s2gap": None if s2 is None else max(0.01, 100.0 - s2),
        **{f"t_{s}": None if _num(timings.get(s)) is None else max(0.001, _num(timings.get(s)) or 0)
           for s in STAGES},
    }
    for name, v in values.items():
        if v is not None:
            out[f"h:{name}:{bucket_of(v)}"] += 1
    return out


def contribution(job: dict[str, Any]) -> tuple[Dims, Counter[str]] | None:
    """``(dims, counters)`` of a terminal job; ``None`` for a job still queued or running."""
    if job.get("status") not in ("succeeded", "failed"):
        return None
    return dims_of(job), counters_of(job)


def shard_of(job_id: str) -> int:
    """The live shard a job adds to (stable: the same job always hits the same item)."""
    return int.from_bytes(hashlib.blake2b(job_id.encode(), digest_size=4).digest(), "big") % SHARDS


def aggregate(jobs: Iterable[dict[str, Any]]) -> dict[Dims, Counter[str]]:
    """Every terminal job's contribution summed per :class:`Dims` (what a full scan gives)."""
    out: dict[Dims, Counter[str]] = {}
    for job in jobs:
        c = contribution(job)
        if c is not None:
            out.setdefault(c[0], Counter()).update(c[1])
    return out


_NARROW = [np.dtype(t).newbyteorder("<") for t in ("i1", "i2", "i4", "i8")]


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` in the narrowest little-endian signed integer type that holds them all."""
    lo, hi = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    dtype = next(t for t in _NARROW if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
    return values.astype(dtype)


@functools.lru_cache(maxsize=4096)
def _combo_parts(combo: str) -> tuple[str, ...]:
    """The four dimensions of a :meth:`Dims.combo` string (the same few recur every day)."""
    return tuple(unquote(p) for p in combo.split("#"))


# --- columns: many aggregates at once ---------------------------------------------------------

_HIST_COLUMN = {name: HIST_BASE + i * N_BUCKETS for i, name in enumerate(HIST_NAMES)}
_SUM_COLUMN = {name: i for i, name in enumerate(SUM_KEYS)}


def column_name(column: int, codes: list[str]) -> str:
    """The counter name of a column (``codes``: the error codes numbered from ``FIXED_COLUMNS``)."""
    if column < HIST_BASE:
        return SUM_KEYS[column]
    if column < FIXED_COLUMNS:
        h, b = divmod(column - HIST_BASE, N_BUCKETS)
        return f"h:{HIST_NAMES[h]}:{b + MIN_BUCKET}"
    return f"e:{codes[column - FIXED_COLUMNS]}"


@dataclass
class Cells:
    """Aggregates as columns: ``(row, column, value)`` triples, ``row`` indexing :attr:`dims`,
    ``column`` a counter (:func:`column_name`). What a reader sums with numpy instead of merging
    one ``Counter`` per combination and day; a ``(row, column)`` may appear more than once."""

    dims: list[Dims]
    codes: list[str]
    row: np.ndarray
    column: np.ndarray
    value: np.ndarray

    @classmethod
    def empty(cls) -> Cells:
        """No aggregates."""
        return cls([], [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_counters(cls, totals: dict[Dims, Counter[str]]) -> Cells:
        """Cells of named counters (unknown counter names are an error, not dropped)."""
        dims = list(totals)
        codes: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[int] = []
        for r, d in enumerate(dims):
            for name, v in totals[d].items():
                if not v:
                    continue
                if name in _SUM_COLUMN:
                    col = _SUM_COLUMN[name]
                elif name.startswith("h:"):
                    hist, _, bucket = name[2:].rpartition(":")
                    col = _HIST_COLUMN[hist] + int(bucket) - MIN_BUCKET
                elif name.startswith("e:"):
                    col = FIXED_COLUMNS + codes.setdefault(name[2:], len(codes))
                else:
                    raise ValueError(f"not a rollup counter: {name!r}")
                rows.append(r)
                cols.append(col)
                vals.append(int(v))
        return cls(dims, list(codes), np.array(rows, np.int64), np.array(cols, np.int64),
                   np.array(vals, np.int64))

    @classmethod
    def concat(cls, parts: list[Cells]) -> Cells:
        """All of ``parts`` as one (rows and error codes renumbered)."""
        parts = [p for p in parts if p.dims]
        if not parts:
            return cls.empty()
        dims: list[Dims] = []
        codes: dict[str, int] = {}
        rows, cols = [], []
        for p in parts:
            remap = np.array([FIXED_COLUMNS + codes.setdefault(c, len(codes)) for c in p.codes] or [0],
                             np.int64)
            col = p.column.copy()
            err = col >= FIXED_COLUMNS
            col[err] = remap[col[err] - FIXED_COLUMNS]
            rows.append(p.row + len(dims))
            cols.append(col)
            dims.extend(p.dims)
        return cls(dims, list(codes), np.concatenate(rows), np.concatenate(cols),
                   np.concatenate([p.value for p in parts]))

    def to_counters(self) -> dict[Dims, Counter[str]]:
        """Named counters per :class:`Dims` (rows of the same dims merged; all-zero ones left out)."""
        out: dict[Dims, Counter[str]] = {}
        for r, c, v in zip(self.row.tolist(), self.column.tolist(), self.value.tolist(), strict=True):
            out.setdefault(self.dims[r], Counter())[column_name(c, self.codes)] += v
        return {d: c for d, c in out.items() if any(c.values())}

    def encode(self) -> dict[str, Any]:
        """A sealed day item's attributes for these cells (the caller's rows all of one day): the
        three arrays, each in the narrowest signed integer type that holds it, behind a header of
        their length and byte widths, zlib-compressed."""
        arrays = [_narrow(a) for a in (self.row, self.column, self.value)]
        widths = "".join(str(a.dtype.itemsize) for a in arrays).encode()
        blob = struct.pack("<I3s", len(self.value), widths) + b"".join(a.tobytes() for a in arrays)
        compact = {"separators": (",", ":")}
        return {"fmt": DAY_FORMAT, "combos": json.dumps([d.combo() for d in self.dims], **compact),
                "codes": json.dumps(self.codes, **compact), "cells": zlib.compress(blob, 6)}

    @classmethod
    def decode(cls, day: str, item: dict[str, Any]) -> Cells:
        """The cells of a sealed day item (format 2, or a format-1 JSON ``data`` document)."""
        if "cells" not in item:
            data = json.loads(item.get("data") or "{}")
            return cls.from_counters({Dims(day, *_combo_parts(combo)): Counter(c)
                                      for combo, c in data.items()})
        raw = item["cells"]
        blob = zlib.decompress(raw.value if hasattr(raw, "value") else bytes(raw))
        n, widths = struct.unpack_from("<I3s", blob)
        arrays, offset = [], struct.calcsize("<I3s")
        for width in widths.decode():
            dtype = np.dtype(f"<i{width}")
            arrays.append(np.frombuffer(blob, dtype, count=n, offset=offset).astype(np.int64))
            offset += n * dtype.itemsize
        dims = [Dims(day, *_combo_parts(combo)) for combo in json.loads(item["combos"])]
        return cls(dims, json.loads(item["codes"]), arrays[0], arrays[1], arrays[2])


# --- writing -----------------------------------------------------------------------------------


def add_update(dims: Dims, counters: Counter[str], shard: int, sign: int = 1) -> dict[str, Any]:
    """``UpdateItem`` arguments (document form) adding ``sign × counters`` to a live item."""
    names = {"#ver": "ver"}
    values: dict[str, Any] = {":one": 1}
    parts = ["#ver :one"]
    for i, (name, value) in enumerate(sorted(counters.items())):
        if value:
            names[f"#a{i}"], values[f":v{i}"] = name, sign * int(value)
            parts.append(f"#a{i} :v{i}")
    return {"Key": {"pk": f"{LIVE_PK}{shard}", "sk": dims.sk()},
            "UpdateExpression": "ADD " + ", ".join(parts),
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


def low_level(table_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Document-form ``Update``/``Delete``/``Put`` arguments as a transaction item body. The
    client is the table resource's (``table.meta.client``), which serializes Python values."""
    return {"TableName": table_name, **{k: v for k, v in kwargs.items() if k != "ReturnValues"}}


def _reasons(exc: ClientError) -> list[str]:
    return [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])]


def transact(client: Any, items: list[dict[str, Any]], attempts: int = 6) -> list[str] | None:
    """Run a ``TransactWriteItems``; ``None`` when it committed, else the cancellation reasons
    (a refused condition: nothing was written). A conflict with another transaction on a hot
    item is retried with jittered back-off, then ``TransientError`` (the queue redelivers)."""
    for attempt in range(attempts):
        try:
            client.transact_write_items(TransactItems=items)
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = _reasons(exc)
            if "ConditionalCheckFailed" in reasons:
                return reasons
            if not any(r in ("TransactionConflict", "ThrottlingError") for r in reasons):
                raise
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
    raise TransientError("the rollup transaction kept conflicting with others; retry")


def transition_items(table_name: str, update: dict[str, Any], job_after: dict[str, Any],
                     sign: int = 1) -> list[dict[str, Any]]:
    """The transaction for a job's guarded terminal write (``update``: ``Update`` or ``Delete``
    arguments with their condition) and its rollup add (subtract for ``sign = -1``)."""
    kind = "Delete" if "UpdateExpression" not in update else "Update"
    items = [{kind: low_level(table_name, update)}]
    c = contribution(job_after)
    if c is not None:
        shard = shard_of(str(job_after["job_id"]))
        items.append({"Update": low_level(table_name, add_update(c[0], c[1], shard, sign))})
    return items


def add_totals(table: Any, totals: dict[Dims, Counter[str]], shard: int = 0, sign: int = 1) -> int:
    """Add aggregated counters to live items, one ``UpdateItem`` per :class:`Dims` (backfill and
    the seeding tool; jobs themselves add in their transaction). Returns the writes made."""
    for dims, counters in totals.items():
        table.update_item(**add_update(dims, counters, shard, sign))
    return len(totals)


# --- reading and sealing ----------------------------------------------------------------------


def _query(table: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    while True:
        resp = table.query(**kwargs)
        yield from resp.get("Items", [])
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _counters(item: dict[str, Any]) -> Counter[str]:
    return Counter({k: int(v) for k, v in item.items() if k not in ("pk", "sk", "ver") and int(v)})


def live_items(table: Any, day_from: str = "0000-00-00", day_to: str = "9999-12-31") -> list[dict[str, Any]]:
    """Every live rollup item of days ``day_from..day_to`` (all shards)."""
    out: list[dict[str, Any]] = []
    for shard in range(SHARDS):
        cond = Key("pk").eq(f"{LIVE_PK}{shard}") & Key("sk").between(day_from, day_to + "~")
        out.extend(_query(table, KeyConditionExpression=cond, ConsistentRead=True))
    return out


def _day_items(table: Any, day_from: str, day_to: str,
               versions_only: bool = False) -> dict[str, dict[str, Any]]:
    cond = Key("pk").eq(DAY_PK) & Key("sk").between(day_from, day_to)
    extra = {"ProjectionExpression": "sk, ver, gen"} if versions_only else {}
    return {i["sk"]: i for i in _query(table, KeyConditionExpression=cond, ConsistentRead=True, **extra)}


@dataclass
class Read:
    """What :func:`read` found: the aggregates as :class:`Cells` and how many items it took
    (``fetched``: day items read from the table, the others came from this process's cache)."""

    cells: Cells
    day_items: int
    live_items: int
    fetched: int = 0

    @property
    def totals(self) -> dict[Dims, Counter[str]]:
        """Named counters per :class:`Dims` (all-zero ones left out)."""
        return self.cells.to_counters()


class DayCache:
    """Decoded sealed day items kept by this process (a warm Lambda keeps them between
    requests), keyed by the random ``gen`` every write of a day item gets: a day item that
    changed has a new ``gen``, so an entry is never stale, only unused. Bounded by cells
    (``IMAGEPIPE_ROLLUP_CACHE_CELLS``, default 2,000,000 ≈ 48 MB; 0: no cache), least recently
    used first out."""

    def __init__(self, max_cells: int) -> None:
        self.max_cells = max_cells
        self._entries: OrderedDict[str, Cells] = OrderedDict()
        self._cells = 0
        self._lock = threading.Lock()

    def get(self, gen: str | None) -> Cells | None:
        """The cells of the day item written with ``gen``, if kept."""
        if not gen:
            return None
        with self._lock:
            hit = self._entries.get(gen)
            if hit is not None:
                self._entries.move_to_end(gen)
            return hit

    def put(self, gen: str | None, cells: Cells) -> None:
        """Keep ``cells`` (read from the day item written with ``gen``)."""
        if not gen or self.max_cells <= 0 or len(cells.value) > self.max_cells:
            return
        with self._lock:
            if gen not in self._entries:
                self._entries[gen] = cells
                self._cells += len(cells.value)
            while self._cells > self.max_cells:
                _, old = self._entries.popitem(last=False)
                self._cells -= len(old.value)


DAY_CACHE = DayCache(int(os.environ.get("IMAGEPIPE_ROLLUP_CACHE_CELLS", "2000000")))
_FETCH_ONE_BY_ONE = 4  # more missing days than this: one range query instead of a GetItem each


def _fetch_days(table: Any, days: list[str], day_from: str, day_to: str) -> dict[str, dict[str, Any]]:
    """The sealed day items of ``days`` (all within ``day_from..day_to``)."""
    if len(days) > _FETCH_ONE_BY_ONE:
        wanted = set(days)
        return {k: v for k, v in _day_items(table, day_from, day_to).items() if k in wanted}
    out = {}
    for day in days:
        item = table.get_item(Key={"pk": DAY_PK, "sk": day}, ConsistentRead=True).get("Item")
        if item is not None:
            out[day] = item
    return out


def _stamps(items: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    return {k: (v.get("ver"), v.get("gen")) for k, v in items.items()}


def read(table: Any, day_from: str, day_to: str, attempts: int = 5,
         cache: DayCache | None = DAY_CACHE) -> Read:
    """Every :class:`Dims`' counters for days ``day_from..day_to`` (``YYYY-MM-DD``, inclusive):
    the sealed day items plus the live items not sealed yet.

    The day items' versions are read first (``sk, ver, gen``: a few bytes per day); only days
    not in ``cache`` under that ``gen`` are fetched and decoded. Then the live items, then the
    versions again: a seal that commits in between moves counts from live items to a day item,
    so the read is redone unless the versions (and every fetched item's) stayed the same."""
    for _ in range(attempts):
        versions = _day_items(table, day_from, day_to, versions_only=True)
        parts: dict[str, Cells] = {}
        missing = []
        for day, v in versions.items():
            hit = cache.get(v.get("gen")) if cache is not None else None
            if hit is not None:
                parts[day] = hit
            else:
                missing.append(day)
        fetched = _fetch_days(table, missing, day_from, day_to) if missing else {}
        live = live_items(table, day_from, day_to)
        again = _day_items(table, day_from, day_to, versions_only=True)
        seen = _stamps(versions)
        if seen == _stamps(again) and _stamps(fetched) == {k: seen[k] for k in missing}:
            break
    else:
        raise TransientError("the rollups were being sealed during every read; retry")
    for day, item in fetched.items():
        parts[day] = Cells.decode(day, item)
        if cache is not None:
            cache.put(item.get("gen"), parts[day])
    unsealed: dict[Dims, Counter[str]] = {}
    for item in live:
        unsealed.setdefault(Dims.from_sk(item["sk"]), Counter()).update(_counters(item))
    cells = Cells.concat([parts[day] for day in sorted(parts)] + [Cells.from_counters(unsealed)])
    return Read(cells, len(versions), len(live), len(fetched))


def _fold(table: Any, client: Any, day: str, add: dict[Dims, Counter[str]],
          live: list[dict[str, Any]]) -> bool:
    """One transaction: the day item with ``add`` (aggregates of ``day``) merged in, put on the
    version it was read with, and each of ``live`` deleted on the ``ver`` it was read with.
    ``False`` when another writer got there first (nothing written)."""
    day_item = table.get_item(Key={"pk": DAY_PK, "sk": day}, ConsistentRead=True).get("Item")
    data = Cells.decode(day, day_item).to_counters() if day_item else {}
    for dims, counters in add.items():
        data.setdefault(dims, Counter()).update(counters)
    cells = Cells.from_counters({d: c for d, c in sorted(data.items()) if any(c.values())})
    ver = int(day_item["ver"]) if day_item else 0
    put = {"Item": {"pk": DAY_PK, "sk": day, "ver": ver + 1, "gen": uuid.uuid4().hex, **cells.encode()},
           "ConditionExpression": "attribute_not_exists(pk)" if day_item is None else "ver = :ver",
           **({} if day_item is None else {"ExpressionAttributeValues": {":ver": ver}})}
    tx = [{"Put": low_level(table.name, put)}]
    for item in live:
        tx.append({"Delete": low_level(table.name, {
            "Key": {"pk": item["pk"], "sk": item["sk"]}, "ConditionExpression": "ver = :ver",
            "ExpressionAttributeValues": {":ver": int(item["ver"])}})})
    return transact(client, tx) is None


def seal(table: Any, client: Any | None = None) -> int:
    """Fold every live item into its day's sealed item; returns how many were folded.

    Each transaction puts the day item on the version it read and deletes each live item on the
    ``ver`` it read: a job adding to a live item meanwhile (or another sealer) cancels it, and
    it is simply tried again on the next run. Safe to run at any time, from any number of places."""
    client = client or table.meta.client
    by_day: dict[str, list[dict[str, Any]]] = {}
    for item in live_items(table):
        by_day.setdefault(item["sk"].split("#", 1)[0], []).append(item)
    folded = 0
    for day, items in sorted(by_day.items()):
        for start in range(0, len(items), _SEAL_CHUNK):
            chunk = items[start:start + _SEAL_CHUNK]
            add: dict[Dims, Counter[str]] = {}
            for item in chunk:
                add.setdefault(Dims.from_sk(item["sk"]), Counter()).update(_counters(item))
            if _fold(table, client, day, add, chunk):
                folded += len(chunk)
    return folded


def add_days(table: Any, totals: dict[Dims, Counter[str]], attempts: int = 10) -> int:
    """Add aggregated counters straight into the sealed day items, one transaction per day
    (backfill and the seeding tool: ``days`` writes instead of one per aggregate). Returns the
    days written; ``TransientError`` if a day kept being sealed by someone else meanwhile."""
    by_day: dict[str, dict[Dims, Counter[str]]] = {}
    for dims, counters in totals.items():
        by_day.setdefault(dims.day, {}).setdefault(dims, Counter()).update(counters)
    client = table.meta.client
    for day, add in sorted(by_day.items()):
        for _ in range(attempts):
            if _fold(table, client, day, add, []):
                break
        else:
            raise TransientError(f"the day item of {day} kept changing; retry")
    return len(by_day)


def clear(table: Any) -> int:
    """Delete every rollup item (live and sealed): the first step of a backfill."""
    keys = [{"pk": i["pk"], "sk": i["sk"]} for i in live_items(table)]
    keys += [{"pk": DAY_PK, "sk": sk} for sk in _day_items(table, "0000-00-00", "9999-12-31")]
    with table.batch_writer() as batch:
        for key in keys:
            batch.delete_item(Key=key)
    return len(keys)


# --- whole-table tools: backfill and check --------------------------------------------------


def scan_jobs(table: Any) -> Iterator[dict[str, Any]]:
    """Every job item (the ``JOBS`` partition of ``gsi1``), raw."""
    yield from _query(table, IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq("JOBS"))


def public_job(item: dict[str, Any]) -> dict[str, Any]:
    """A raw job item as :func:`contribution` reads it."""
    return {k: v for k, v in item.items() if k in ("job_id", "status", "created_at", "finished_at", "preset",
                                                      "arrival", "recipe", "result", "error", "attempts")}


def backfill(table: Any) -> dict[str, int]:
    """Rebuild the rollups from the job records: clear them, write the full scan's totals into
    the day items.

    Jobs finishing while it runs may be counted twice or not at all: run it while the
    pipeline is idle, and confirm with :func:`check`."""
    cleared = clear(table)
    totals = aggregate(public_job(i) for i in scan_jobs(table))
    return {"cleared": cleared, "groups": len(totals), "days": add_days(table, totals),
            "jobs": sum(c["n"] for c in totals.values())}


def differences(expected: dict[Dims, Counter[str]], actual: dict[Dims, Counter[str]]) -> list[dict[str, Any]]:
    """Every (dims, counter) whose values differ, with both values."""
    out = []
    for dims in sorted(set(expected) | set(actual)):
        e, a = expected.get(dims, Counter()), actual.get(dims, Counter())
        for name in sorted(set(e) | set(a)):
            if e[name] != a[name]:
                out.append({"dims": dims.sk(), "counter": name, "scan": e[name], "rollups": a[name]})
    return out


def check(table: Any) -> dict[str, Any]:
    """Compare the rollups of every day with a full scan of the job records."""
    scan = aggregate(public_job(i) for i in scan_jobs(table))
    rolled = read(table, "0000-00-00", "9999-12-31").totals
    diffs = differences(scan, rolled)
    return {"ok": not diffs, "jobs_scanned": sum(c["n"] for c in scan.values()),
            "jobs_in_rollups": sum(c["n"] for c in rolled.values()), "differences": diffs[:100]}


def days_between(day_from: str, day_to: str) -> list[str]:
    """Every ``YYYY-MM-DD`` from ``day_from`` to ``day_to`` inclusive."""
    start, end = date.fromisoformat(day_from), date.fromisoformat(day_to)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
