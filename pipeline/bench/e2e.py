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


def batch(workers: int, images: list[bytes], log: Callable[[str], None], recipe: dict[str, Any] | None = None,
          label: str = "light", submit: str = "batch") -> dict[str, Any]:
    """Upload every image first, then queue all jobs at once and time until the last finishes.
    ``submit``: ``"batch"`` queues them with ``POST /jobs/batch`` (``Client.process_many``),
    ``"single"`` with one ``POST /jobs`` per image."""
    from pipeline.client import Client
    from pipeline.stack import LocalStack

    recipe = recipe or RECIPE
    with tempfile.TemporaryDirectory(prefix="imagepipe-e2e-") as tmp, \
            LocalStack(data_dir=tmp, port=0, workers=workers) as stack, \
            Client(stack.api_url, stack.api_key) as client:
        # no filename: the client names bytes "upload.<ext>" from their sniffed type
        ids = [client.upload(data)["image_id"] for data in images]
        warm = client.upload(images[0])["image_id"]
        _await(client, client.process(warm, recipe)["job_id"], 0.05)
        t0 = time.time()
        if submit == "batch":
            outcomes = client.process_many({"image_id": i, "recipe": recipe} for i in ids)
            job_ids = [o["job_id"] for o in outcomes]
        else:
            job_ids = [client.process(image_id, recipe)["job_id"] for image_id in ids]
        jobs = _await_all(client, job_ids)
        finished = [_epoch(j.get("finished_at")) for j in jobs]
        elapsed = max(f for f in finished if f is not None) - t0 if any(finished) else float("nan")
        failed = sum(j.get("status") == "failed" for j in jobs)
        unfinished = sum(j.get("status") not in ("succeeded", "failed") for j in jobs)
    res = {"workers": workers, "images": len(images), "seconds": elapsed, "failed": failed,
           "unfinished": unfinished, "images_per_s": len(images) / elapsed, "submit": submit}
    log(f"e2e batch '{label}' ({submit}) with {workers} worker(s): {len(images)} images in {elapsed:.2f} s")
    return res


def _await_all(client: Any, job_ids: list[str]) -> list[dict[str, Any]]:
    """Every job's final record, checked sparsely: the processor stamps ``finished_at`` itself,
    so the client only needs to learn that the batch is over, and every request it makes
    takes CPU from the 2 cores the workers use. It waits on the last queued job (about the
    last to finish), then reads each job once, waiting on any that is still open."""
    deadline = time.monotonic() + BATCH_TIMEOUT_S
    out: list[dict[str, Any]] = []
    for job_id in [job_ids[-1], *job_ids]:
        while True:
            job = client.get_job(job_id)
            if job.get("status") in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the measured time is the processor's own stamp, not this loop's
        out.append(job)
    return out[1:]


def _epoch(iso: str | None) -> float | None:
    """Seconds since the epoch of a ``now_iso()`` stamp (the processor's clock is this host's)."""
    from imagepipe.service.records import parse_iso

    when = parse_iso(iso)
    return None if when is None else when.timestamp()


def workloads(batch_size: int) -> list[dict[str, Any]]:
    """The batches: the latency test's light job, and real photos with the dashboard's default
    preset (the corpus when it is there, else generated photo-like images of similar sizes)."""
    from pipeline import PROJECT_ROOT
    from pipeline.bench.corpus import default_corpus, list_images
    from pipeline.presets import DEFAULT_PRESET, PRESETS

    distinct = [_jpeg(2560, 1600, seed=s) for s in range(5)]
    light = [distinct[i % len(distinct)] for i in range(batch_size)]
    label = "2560×1600 JPEG → 1024 JPEG q85 (the latency test's job)"
    out = [{"name": "light", "label": label, "recipe": RECIPE, "images": light, "submit": "batch"},
           {"name": "light-single", "label": f"{label}, one `POST /jobs` per image", "recipe": RECIPE,
            "images": light, "submit": "single"}]
    corpus = default_corpus(PROJECT_ROOT)
    if corpus is not None:
        photos = [p.read_bytes() for p in list_images(corpus)]
        source = f"the {len(photos)} corpus images (0.1–17 MP), cycled"
    else:
        sizes = [(4000, 3000), (3000, 2000), (1920, 1080)]
        photos = [_jpeg(w, h, seed=10 + i) for i, (w, h) in enumerate(sizes)]
        source = "3 generated photo-like JPEGs (12, 6 and 2 MP), cycled"
    out.append({"name": "preset", "label": f"{source} → preset “{DEFAULT_PRESET}”",
                "recipe": PRESETS[DEFAULT_PRESET], "submit": "batch",
                "images": [photos[i % len(photos)] for i in range(batch_size)]})
    return out


def _engine_job(args: tuple[bytes, dict[str, Any]]) -> float:
    from imagepipe.core import process
    from imagepipe.core.recipe import parse_recipe

    data, recipe = args
    return float(process(data, parse_recipe(recipe)).facts["timings_ms"]["total"])


def _warm_worker(data: bytes, recipe: dict[str, Any], barrier: Any) -> None:
    """Pool initializer: imports and one job, then wait until every worker has done the same."""
    _engine_job((data, recipe))
    barrier.wait(timeout=JOB_TIMEOUT_S)


def engine_alone(workers: int, images: list[bytes], recipe: dict[str, Any]) -> float:
    """Seconds for the engine alone over the batch in a pool of ``workers`` processes (no
    stack, no I/O): the scaling this machine allows before the stack takes its share.

    Every worker is warm before the clock starts (imports + one job in the initializer, then a
    barrier): with a plain warm-up ``map`` one worker could take every warm-up task while the
    other was still importing, and the timed batch then paid the second worker's start-up."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_warm_worker,
                             initargs=(images[0], recipe, barrier)) as pool:
        list(pool.map(_engine_job, [(images[0], recipe)] * workers))  # returns once every worker is warm
        t0 = time.perf_counter()
        list(pool.map(_engine_job, [(data, recipe) for data in images]))
        return time.perf_counter() - t0


def throughput(batch_size: int, log: Callable[[str], None], repeats: int = 2) -> list[dict[str, Any]]:
    """Each workload with 1 and 2 workers, alternated ``repeats`` times (the machine is shared:
    alternating spreads its noise over both counts); the ratio is of the median times."""
    import statistics

    results = []
    for wl in workloads(batch_size):
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _ in range(repeats):
            for workers in (1, 2):
                runs[workers].append(batch(workers, wl["images"], log, wl["recipe"], wl["name"],
                                           wl["submit"]))
        alone: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeats if wl["submit"] == "batch" else 0):  # the same engine work as "light"
            for workers in (1, 2):
                alone[workers].append(engine_alone(workers, wl["images"], wl["recipe"]))
        med = {w: statistics.median(r["seconds"] for r in rs) for w, rs in runs.items()}
        alone_med = {w: statistics.median(v) for w, v in alone.items() if v}
        row = {"name": wl["name"], "label": wl["label"], "recipe": wl["recipe"], "submit": wl["submit"],
               "images": len(wl["images"]), "runs": runs, "median_s": med, "speedup": med[1] / med[2]}
        if alone_med:
            log(f"engine alone '{wl['name']}': 1 process {alone[1]} s, 2 processes {alone[2]} s")
            row.update(engine_alone_s=alone_med, engine_alone_speedup=alone_med[1] / alone_med[2])
        results.append(row)
    return results


def run(log: Callable[[str], None], n: int = 20, batch_size: int = 50) -> dict[str, Any]:
    """The whole end-to-end benchmark."""
    import os
    from datetime import UTC, datetime

    load = f"{os.getloadavg()[0]:.1f}"
    out = {"latency": latency(n, log), "throughput": throughput(batch_size, log)}
    out["measured_at"] = (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC (load average {load} before, "
                          f"{os.getloadavg()[0]:.1f} after)")
    return out


def render(e2e: dict[str, Any]) -> str:
    """The markdown section for docs/benchmarks.md."""
    if "error" in e2e:
        return ("## End-to-end through the local stack (issue 4 §7)\n\n"
                f"Not measured in this run: the local stack failed ({e2e['error']}).")
    lat = e2e["latency"]
    lines = ["## End-to-end through the local stack (issue 4 §7)", "",
             *([f"Measured {e2e['measured_at']} by `python -m pipeline.bench.e2e`.", ""]
               if e2e.get("measured_at") else []),
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
    lines += ["", "Throughput: for each batch the images are uploaded first, then all jobs are queued "
              "at once (with `POST /jobs/batch`, 50 jobs in one request, unless the row says one "
              "`POST /jobs` per image); time from the job request to the last job's `finished_at` "
              "(stamped by the processor; the client checks sparsely so that it takes little CPU "
              "from the workers). "
              "1 and 2 processor workers alternate, twice each, each run on a fresh stack; the speed-up "
              "is the ratio of the median times.", "",
              "| batch | images | 1 worker s (runs) | 2 workers s (runs) | 2 vs 1 | target ≥ 1.7× | failed "
              "| engine alone, 1 vs 2 processes (s) | engine alone 2 vs 1 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for wl in e2e.get("throughput", []):
        runs = {int(k): v for k, v in wl["runs"].items()}
        med = {int(k): v for k, v in wl["median_s"].items()}
        cell = {w: "{:.2f} ({})".format(med[w], ", ".join(f"{r['seconds']:.2f}" for r in runs[w]))
                for w in (1, 2)}
        failed = sum(r["failed"] + r["unfinished"] for w in (1, 2) for r in runs[w])
        alone = {int(k): v for k, v in (wl.get("engine_alone_s") or {}).items()}
        alone_cells = (f"{alone[1]:.2f} / {alone[2]:.2f} | {wl['engine_alone_speedup']:.2f}×" if alone
                       else "(as above) | ")
        lines.append(f"| {wl['label']} | {wl['images']} | {cell[1]} | {cell[2]} | **{wl['speedup']:.2f}×** | "
                     f"{'met' if wl['speedup'] >= 1.7 else 'NOT met'} | {failed} | {alone_cells} |")
    lines += ["", "The machine has 2 cores that the emulator, the API and this client share with "
              "the workers."]
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(lambda m: print(m, file=sys.stderr)), indent=1, default=str))
