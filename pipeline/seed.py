"""Synthetic history for benchmarks and demos: N finished job records and their rollups.

The jobs look like the processor's own (same keys, ``gsi1`` entries, typed ``result``, JSON-text
recipe, ``preset``, ``arrival``, ``out_format``), spread over the last ``days`` days with a fixed
mix of presets, ways in, failures and log-normal figures (``random.Random(seed)``: the same
arguments give the same records). They are written with ``BatchWriteItem``; their rollups are
computed by the rollup code itself (``rollups.aggregate`` over the same job dicts) and added to
the sealed day items in one transaction per day, exactly as backfill does. Synthetic jobs have no
image record or output object (the Images tab does not list them; their downloads 404).

    python -m pipeline.rollups_cli seed --jobs 100000 --endpoint-url http://127.0.0.1:PORT --table NAME
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from imagepipe.service import rollups
from imagepipe.service.records import _job_item, as_json_text, to_dynamo

#: preset -> (output format, share of jobs, median ratio, median bpp)
MIX: dict[str | None, tuple[str, float, float, float]] = {
    "Web 1600 WebP": ("webp", 0.35, 9.0, 0.9),
    "Thumbnail 320 JPEG": ("jpeg", 0.2, 25.0, 1.6),
    "Social 1200 JPEG": ("jpeg", 0.15, 7.0, 1.8),
    "AVIF 2048": ("avif", 0.1, 14.0, 0.5),
    "Archive PNG": ("png", 0.05, 1.3, 11.0),
    None: ("webp", 0.15, 5.0, 1.2),
}
ARRIVALS = (("presigned", 0.7), ("direct", 0.2), ("drop", 0.1))
FAILURE_RATE = 0.03
INPUT_SIZES = ((2400, 1600), (3000, 2000), (4500, 3000), (6000, 4000))
ERRORS = ("corrupt_image", "unsupported_format", "too_many_pixels", "retries_exhausted")
STAGE_MEDIANS_MS = {"queue_wait": 40.0, "download": 8.0, "decode": 25.0, "transform": 30.0, "encode": 60.0,
                    "metrics": 20.0, "upload": 9.0, "record": 3.0}


def _pick(rng: random.Random, weighted: list[tuple[Any, float]]) -> Any:
    x, acc = rng.random(), 0.0
    for value, weight in weighted:
        acc += weight
        if x < acc:
            return value
    return weighted[-1][0]


def _lognormal(rng: random.Random, median: float, sigma: float = 0.5) -> float:
    return round(median * math.exp(rng.gauss(0.0, sigma)), 3)


def synthetic_jobs(n: int, days: int = 90, seed: int = 1,
                   now: datetime | None = None, label: str = "") -> Iterator[dict[str, Any]]:
    """``n`` finished jobs (public form, as ``Records.get_job`` returns them), oldest first.

    ``label`` (e.g. ``"#t1"``) is appended to every job's preset (``none`` for the jobs without
    one), so a test can tell its seeded jobs from anything else in a shared stack."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    # from the first second of the day ``days - 1`` days ago (UTC) to a minute ago: a range of
    # the last ``days`` days holds every job
    first = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days - 1)
    span = max(0.0, (now - first).total_seconds() - 60)
    presets = [(p, share) for p, (_, share, _, _) in MIX.items()]
    for _ in range(n):
        created = first + timedelta(seconds=rng.random() * span)
        preset = _pick(rng, presets)
        fmt, _, ratio_med, bpp_med = MIX[preset]
        if label:
            preset = f"{preset or 'none'} {label}"
        image_id, recipe_hash = uuid.UUID(int=rng.getrandbits(128)).hex, f"{rng.getrandbits(64):016x}"
        job: dict[str, Any] = {
            "job_id": f"{image_id}-{recipe_hash}", "image_id": image_id, "recipe_hash": recipe_hash,
            "recipe": {"format": fmt}, "preset": preset, "trigger": "api",
            "arrival": _pick(rng, list(ARRIVALS)), "source_key": f"uploads/{image_id}/seed.jpg",
            "filename": f"seed-{image_id[:8]}.jpg", "attempts": 1,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "finished_at": (created + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if rng.random() < FAILURE_RATE:
            job["status"] = "failed"
            job["error"] = {"code": rng.choice(ERRORS), "message": "synthetic failure"}
        else:
            original = int(_lognormal(rng, 2_500_000, 0.8)) + 1000
            ratio = max(0.5, _lognormal(rng, ratio_med, 0.45))
            timings = {s: _lognormal(rng, m) for s, m in STAGE_MEDIANS_MS.items()}
            timings["total"] = round(sum(timings[s] for s in ("decode", "transform", "encode", "metrics")), 3)
            timings["service_total"] = round(timings["total"] + timings["download"] + timings["upload"]
                                             + timings["record"], 3)
            job["status"] = "succeeded"
            job["result"] = {
                "format": fmt, "bytes": max(1, int(original / ratio)), "original_bytes": original,
                "compression_ratio": round(ratio, 4), "bits_per_pixel": _lognormal(rng, bpp_med, 0.4),
                "ssim": round(min(0.9999, 1 - _lognormal(rng, 0.02, 0.6)), 5),
                "psnr": _lognormal(rng, 38.0, 0.1), "width": 1600, "height": 1067,
                "content_type": f"image/{fmt}", "timings_ms": timings,
                "output_key": f"outputs/{image_id}/{recipe_hash}.{fmt}",
            }
            width, height = rng.choice(INPUT_SIZES)  # 3:2 camera sizes, fit to the 1600×1067 output
            job["facts"] = {"input": {"format": "jpeg", "width": width, "height": height, "bytes": original}}
        job["out_format"] = rollups.output_format(job)
        yield job


def job_item(job: dict[str, Any]) -> dict[str, Any]:
    """A synthetic job as the table stores it (the same layout ``Records`` writes)."""
    item = _job_item(job)
    item["status"] = job["status"]
    item["recipe"] = as_json_text(job["recipe"])
    for name in ("result", "error"):
        if name in job:
            item[name] = to_dynamo(job[name])
    if "facts" in job:
        item["facts"] = as_json_text(job["facts"])
    return {k: v for k, v in item.items() if v is not None}


def seed(table: Any, n: int, days: int = 90, seed: int = 1, batch: int = 25,
         label: str = "") -> dict[str, Any]:
    """Write ``n`` synthetic jobs and add their rollups (then seal). Returns counts and times."""
    client, name = table.meta.client, table.name
    started = time.perf_counter()
    totals: dict[rollups.Dims, Counter[str]] = {}
    chunk: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        nonlocal written
        requests = [{"PutRequest": {"Item": job_item(j)}} for j in chunk]
        while requests:
            resp = client.batch_write_item(RequestItems={name: requests})
            requests = resp.get("UnprocessedItems", {}).get(name, [])
        written += len(chunk)
        for dims, counters in rollups.aggregate(chunk).items():
            totals.setdefault(dims, Counter()).update(counters)
        chunk.clear()

    for job in synthetic_jobs(n, days, seed, label=label):
        chunk.append(job)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    jobs_s = time.perf_counter() - started
    days = rollups.add_days(table, totals)
    return {"jobs": written, "groups": len(totals), "days": days, "jobs_seconds": round(jobs_s, 2),
            "seconds": round(time.perf_counter() - started, 2)}
