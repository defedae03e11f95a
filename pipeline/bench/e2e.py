"""End-to-end benchmark through the embedded local stack (issue 4, section 7).

- latency from the start of an upload to a job result with its download URL, p50/p95, for a
  2560×1600 JPEG, through both triggers (``POST /jobs`` after the upload, and a recipe attached
  to the upload so the S3 event starts the job), and the overhead beyond the engine's own
  ``timings_ms.total``;
- throughput of a 50-image batch with 2 processor workers against 1.

Everything binds to 127.0.0.1; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from typing import Any

from pipeline.bench.corpus import _photo_like

RECIPE = {"resize": {"width": 1024, "height": 1024, "fit": "inside"}, "format": "jpeg", "quality": 85}
POLL_S = 0.01
JOB_TIMEOUT_S = 60.0
BATCH_TIMEOUT_S = 600.0


def _jpeg(width: int, height: int, seed: int) -> bytes:
    buf = io.BytesIO()
    _photo_like(width, height, seed=seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _await(client: Any, job_id: str, poll_s: float = POLL_S,
           seen: dict[str, float] | None = None) -> dict[str, Any]:
    """Poll until terminal; ``seen`` gets the perf_counter time each status was first observed."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = client.get_job(job_id)
        if seen is not None:
            seen.setdefault(str(job.get("status")), time.perf_counter())
        if job.get("status") in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not finished after {JOB_TIMEOUT_S} s")
        time.sleep(poll_s)


def _one(client: Any, data: bytes, i: int, via: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    if via == "s3":
        up = client.upload(data, filename=f"lat-{via}-{i}.jpg", recipe=RECIPE)
        job_id = up["job_id"]
    else:
        up = client.upload(data, filename=f"lat-{via}-{i}.jpg")
        job_id = client.process(up["image_id"], RECIPE)["job_id"]
    t_up = time.perf_counter()
    seen: dict[str, float] = {}
    job = _await(client, job_id, seen=seen)
    t1 = time.perf_counter()
    result = job.get("result") or {}
    if job["status"] != "succeeded" or not result.get("download_url"):
        return {"error": (job.get("error") or {}).get("code", job["status"])}
    engine_ms = float((result.get("timings_ms") or {}).get("total", float("nan")))
    total_ms = (t1 - t0) * 1000
    running_at = seen.get("running", t1)
    return {"total_ms": total_ms, "upload_ms": (t_up - t0) * 1000, "engine_ms": engine_ms,
            "overhead_ms": total_ms - engine_ms,
            # from the upload's end until the job was first seen running (queue + event delivery)
            "to_running_ms": (running_at - t_up) * 1000,
            # from first seen running to seen succeeded, minus the engine (S3, DynamoDB, worker IPC)
            "running_minus_engine_ms": (t1 - running_at) * 1000 - engine_ms}


def latency(n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """``n`` sequential upload→result runs per trigger on one stack (after 2 warm-up runs each)."""
    from pipeline.client import Client
    from pipeline.stack import LocalStack

    data = _jpeg(2560, 1600, seed=7)
    out: dict[str, Any] = {"n": n, "poll_ms": POLL_S * 1000, "image_bytes": len(data)}
    with tempfile.TemporaryDirectory(prefix="imagepipe-e2e-") as tmp, \
            LocalStack(data_dir=tmp, port=0) as stack, Client(stack.api_url, stack.api_key) as client:
        out["workers"] = stack.workers
        for via in ("api", "s3"):
            for i in range(2):
                _one(client, data, -1 - i, via)  # warm-up: worker imports, connection pools
            runs = []
            for i in range(n):
                runs.append(_one(client, data, i, via))
            ok = [r for r in runs if "error" not in r]
            out[via] = {key: {"p50": _pct([r[key] for r in ok], 0.5), "p95": _pct([r[key] for r in ok], 0.95)}
                        for key in ("total_ms", "upload_ms", "engine_ms", "overhead_ms", "to_running_ms",
                                    "running_minus_engine_ms")}
            out[via]["errors"] = [r["error"] for r in runs if "error" in r]
            log(f"e2e latency via {via}: p50 {out[via]['total_ms']['p50']:.0f} ms, "
                f"overhead p50 {out[via]['overhead_ms']['p50']:.0f} ms ({len(ok)}/{n} ok)")
    return out


def batch(workers: int, images: list[bytes], log: Callable[[str], None]) -> dict[str, Any]:
    """Upload every image first, then queue all jobs at once and time until the last finishes."""
    from pipeline.client import Client
    from pipeline.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="imagepipe-e2e-") as tmp, \
            LocalStack(data_dir=tmp, port=0, workers=workers) as stack, \
            Client(stack.api_url, stack.api_key) as client:
        ids = [client.upload(data, filename=f"batch-{i}.jpg")["image_id"] for i, data in enumerate(images)]
        warm = client.upload(images[0], filename="warm.jpg")["image_id"]
        _await(client, client.process(warm, RECIPE)["job_id"], 0.05)
        t0 = time.perf_counter()
        pending = [client.process(image_id, RECIPE)["job_id"] for image_id in ids]
        failed = 0
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            still = []
            for k, job_id in enumerate(pending):
                job = client.get_job(job_id)
                if job.get("status") in ("succeeded", "failed"):
                    failed += job["status"] == "failed"
                else:
                    still.append(job_id)
                    if len(still) > workers:  # later jobs are queued behind these: check next round
                        still.extend(pending[k + 1:])
                        break
            pending = still
            if pending:
                time.sleep(0.05)
        elapsed = time.perf_counter() - t0
    res = {"workers": workers, "images": len(images), "seconds": elapsed, "failed": failed,
           "unfinished": len(pending), "images_per_s": len(images) / elapsed}
    log(f"e2e batch with {workers} worker(s): {len(images)} images in {elapsed:.2f} s")
    return res


def run(log: Callable[[str], None], n: int = 20, batch_size: int = 50) -> dict[str, Any]:
    """The whole end-to-end benchmark."""
    result: dict[str, Any] = {"latency": latency(n, log)}
    distinct = [_jpeg(2560, 1600, seed=s) for s in range(5)]
    images = [distinct[i % len(distinct)] for i in range(batch_size)]
    result["batch"] = [batch(w, images, log) for w in (1, 2)]
    return result


def render(e2e: dict[str, Any]) -> str:
    """The markdown section for docs/benchmarks.md."""
    if "error" in e2e:
        return ("## End-to-end through the local stack (issue 4 §7)\n\n"
                f"Not measured in this run: the local stack failed ({e2e['error']}).")
    lat = e2e["latency"]
    lines = ["## End-to-end through the local stack (issue 4 §7)", "",
             f"A {lat['image_bytes'] / 1024:.0f} KiB 2560×1600 JPEG, recipe `{RECIPE}`; "
             f"{lat['n']} sequential runs per trigger after 2 warm-up runs, on one stack with "
             f"{lat['workers']} processor workers. Latency = from the start of the upload "
             f"(presign + multipart POST to S3) to a "
             f"`GET /jobs/{{id}}` that shows `succeeded` with a download URL (polled every "
             f"{lat['poll_ms']:.0f} ms). Overhead = latency − the engine's own `timings_ms.total`.", "",
             "| trigger | latency p50 ms | latency p95 ms | upload (+ job request) p50 ms | then until seen "
             "running p50 ms | running − engine p50 ms | engine p50 ms "
             "| overhead p50 ms | overhead p95 ms | target overhead ≤ 50 ms p50 | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for via, label in (("api", "`POST /jobs` after upload"), ("s3", "recipe at upload (S3 event)")):
        s = lat[via]
        ov = s["overhead_ms"]["p50"]
        lines.append(f"| {label} | {s['total_ms']['p50']:.0f} | {s['total_ms']['p95']:.0f} | "
                     f"{s['upload_ms']['p50']:.0f} | {s['to_running_ms']['p50']:.0f} | "
                     f"{s['running_minus_engine_ms']['p50']:.0f} | {s['engine_ms']['p50']:.0f} | {ov:.0f} | "
                     f"{s['overhead_ms']['p95']:.0f} | {'met' if ov <= 50 else 'NOT met'} | "
                     f"{len(s['errors'])} |")
    b = {r["workers"]: r for r in e2e["batch"]}
    lines += ["", "Batch: the images are uploaded first, then all jobs are queued at once; time from the "
              "first `POST /jobs` to the last job seen finished (polled every 50 ms).", "",
              "| processor workers | images | seconds | images/s | failed | unfinished |",
              "| --- | --- | --- | --- | --- | --- |"]
    for w in sorted(b):
        r = b[w]
        lines.append(f"| {w} | {r['images']} | {r['seconds']:.2f} | {r['images_per_s']:.2f} | "
                     f"{r['failed']} | {r['unfinished']} |")
    if 1 in b and 2 in b:
        speedup = b[2]["images_per_s"] / b[1]["images_per_s"]
        lines += ["", f"2 workers vs 1: **{speedup:.2f}×** (target ≥ 1.7×: "
                  f"{'met' if speedup >= 1.7 else 'NOT met'}). The machine has 2 cores that the emulator, "
                  "the API and this client share with the workers."]
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(lambda m: print(m, file=sys.stderr)), indent=1))
