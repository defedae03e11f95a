"""A bounded load test on loopback: 200 uploads + jobs at concurrency 16.

Asserts correctness only — nothing lost (every job succeeded with exactly one output and
one record), no 5xx (429 backpressure is retried and counted) — and writes the latency
figures (p50/p95 per step and end to end) to test-artifacts/reliability.jsonl. Durations
are never asserted: the machine is shared.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import DEST_BUCKET, list_keys, post_file, record_figures, s3
from tests.unit.imagegen import photo_bytes

N_IMAGES = 200
CONCURRENCY = 16
RECIPE = {"resize": {"width": 48, "height": 48, "fit": "inside"}, "format": "webp", "quality": 60}
MAX_429_RETRIES = 20
POLL_S = 0.5  # polling is load too: 16 clients at 2 polls/s


class Tally:
    """Thread-safe counters of HTTP statuses and per-step latencies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = {}
        self.server_errors: list[str] = []

    def add(self, step: str, r: httpx.Response, seconds: float | None = None) -> None:
        with self.lock:
            self.status[f"{step} {r.status_code}"] += 1
            if r.status_code >= 500:
                self.server_errors.append(f"{step} {r.status_code} {r.text[:200]}")
            if seconds is not None and r.status_code < 400:
                self.latency.setdefault(step, []).append(seconds * 1000)

    def time(self, step: str, seconds: float) -> None:
        with self.lock:
            self.latency.setdefault(step, []).append(seconds * 1000)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _call(tally: Tally, step: str, fn: Any) -> httpx.Response:
    """One request, retried on 429 with a small backoff (bounded)."""
    for attempt in range(MAX_429_RETRIES):
        t = time.perf_counter()
        r = fn()
        tally.add(step, r, time.perf_counter() - t)
        if r.status_code != 429:
            return r
        time.sleep(min(1.0, 0.05 * 2**attempt))
    return r


@pytest.mark.slow
def test_200_uploads_and_jobs_at_concurrency_16(local_stack):
    sources = [photo_bytes(96, 64, "jpeg", seed=s) for s in range(8)]
    tally = Tally()
    headers = {"x-api-key": local_stack.api_key}

    def one(i: int) -> dict[str, Any]:
        data = sources[i % len(sources)]
        with httpx.Client(base_url=local_stack.api_url, headers=headers, timeout=60) as c:
            t0 = time.perf_counter()
            body = {"filename": f"load-{i}.jpg", "content_type": "image/jpeg", "size": len(data)}
            r = _call(tally, "presign", lambda: c.post("/uploads", json=body))
            assert r.status_code == 201, r.text
            reply = r.json()
            name = f"load-{i}.jpg"
            r = _call(tally, "s3_post", lambda: post_file(reply["upload"], data, name, "image/jpeg"))
            assert r.status_code in (200, 201, 204), r.text
            t_job = time.perf_counter()
            job_body = {"image_id": reply["image_id"], "recipe": RECIPE}
            r = _call(tally, "job", lambda: c.post("/jobs", json=job_body))
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            deadline = time.monotonic() + 240
            while True:
                r = _call(tally, "poll", lambda: c.get(f"/jobs/{job_id}"))
                assert r.status_code == 200, r.text
                job = r.json()
                if job["status"] in ("succeeded", "failed"):
                    break
                assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
                time.sleep(POLL_S)
            now = time.perf_counter()
            tally.time("job_to_result", now - t_job)
            tally.time("end_to_end", now - t0)
            return {"image_id": reply["image_id"], "job": job}

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(one, range(N_IMAGES)))
    wall = time.perf_counter() - started

    assert tally.server_errors == [], tally.server_errors[:5]
    assert len(results) == N_IMAGES
    failed = [r["job"] for r in results if r["job"]["status"] != "succeeded"]
    assert failed == [], failed[:3]
    assert len({r["image_id"] for r in results}) == N_IMAGES
    client = s3(local_stack)
    outputs = list_keys(client, DEST_BUCKET, "outputs/")
    for r in results:  # exactly one output per image+recipe, the one the record points to
        mine = [k for k in outputs if k.startswith(f"outputs/{r['image_id']}/")]
        assert "result" in r["job"], r["job"]  # a succeeded job always carries its result
        assert mine == [r["job"]["result"]["output_key"]], (r["image_id"], mine)

    figures = {
        "images": N_IMAGES, "concurrency": CONCURRENCY, "wall_s": round(wall, 1),
        "throughput_jobs_per_s": round(N_IMAGES / wall, 2),
        "statuses": dict(tally.status), "lost": 0, "http_5xx": 0,
        "http_429": sum(v for k, v in tally.status.items() if k.endswith(" 429")),
    }
    for step, values in tally.latency.items():
        figures[f"{step}_ms"] = {"p50": _pct(values, 0.50), "p95": _pct(values, 0.95),
                                 "mean": round(statistics.fmean(values), 1), "n": len(values)}
    record_figures("load_200_c16", figures)
