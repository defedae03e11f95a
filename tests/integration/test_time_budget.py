"""Work that cannot finish in time, through the local stack (issue 18).

One stack (1024 MB processor) with a small processor timeout (10 s) and a visibility timeout
above it (12 s, as on AWS where it is 6 × the timeout), so a redelivery always comes after the
previous attempt's deadline. ``IMAGEPIPE_ENCODE_COST_SCALE`` makes the processor's estimates
N× the calibrated table (a slower CPU, as on a small Lambda) and ``IMAGEPIPE_CPU_SLOWDOWN`` pins
the load factor; the sizes below are chosen from the same table, so the outcomes hold whatever
``make bench`` fitted.

- a job whose encode cannot be estimated (AVIF speed 0) runs where it can be stopped and ends
  ``timeout`` at its deadline, inside the invocation, and is not retried;
- a job no setting can fit is refused at once (``over_time_budget``), one that a faster
  setting fits is adapted (``facts.budget.adapted``) and succeeds;
- an attempt killed by the runtime is not rerun: the next delivery fails it ``attempt_killed``;
- a transient fault still retries;
- ``format: best`` skips a candidate that cannot fit (with the reason), a sweep reports the cells
  that cannot fit as skipped and measures the rest;
- an AVIF encode that needs more memory than the processor has is refused at once
  (``over_memory_budget``);
- a small job queued behind a long one completes meanwhile.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imagepipe.core.budget import SAFETY, estimate_ms
from imagepipe.service.records import parse_iso
from pipeline.stack.faults import CONTROL_PATH, ENV_FLAG
from pipeline.stack.runtime import WORKER_TIMEOUT
from tests.conftest import TEST_API_KEY
from tests.reliability.conftest import (
    DEST_BUCKET,
    api,
    list_keys,
    s3,
    submit_job,
    upload,
    wait_job,
    wait_jobs,
)
from tests.unit.imagegen import photo_bytes

TIMEOUT_S = 10
VISIBILITY_S = 12
MEMORY_MB = 1024  # below the template's default, so a ~42 MP AVIF cannot fit (test 7)
SCALE = 20.0
BOTO_TRIES = 4  # requests per boto3 call in the service (1 + 3 retries)
#: not in the table, so it runs stoppable; ≈ 5 s/MP here, so 4.3 MP cannot finish in 10 s
NEVER_ESTIMATED = {"format": "avif", "quality": 50, "avif": {"speed": 0}}
SMALL = {"resize": {"width": 48, "height": 48, "fit": "inside"}, "format": "webp", "quality": 60}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pipeline.stack.serve import LocalStack

    before = os.environ.get(ENV_FLAG)
    os.environ[ENV_FLAG] = "1"  # the emulator (a child process) takes the fault-injection hook
    s = LocalStack(data_dir=tmp_path_factory.mktemp("budget-stack"), port=0, api_key=TEST_API_KEY, workers=2,
                   processor_timeout=TIMEOUT_S, visibility_timeout=VISIBILITY_S, max_receive_count=3,
                   processor_memory_mb=MEMORY_MB,
                   reconcile_interval=1.0,
                   # the CPU slowdown is pinned so the outcomes below do not depend on this shared
                   # machine's load (the load-average default is unit-tested)
                   extra_env={"IMAGEPIPE_ENCODE_COST_SCALE": str(SCALE), "IMAGEPIPE_CPU_SLOWDOWN": "1"})
    try:
        s.start()
        yield s
    finally:
        s.stop()
        if before is None:
            os.environ.pop(ENV_FLAG, None)
        else:
            os.environ[ENV_FLAG] = before


def _scaled(encoder: str, setting: int, pixels: int, monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("IMAGEPIPE_ENCODE_COST_SCALE", str(SCALE))
    est = estimate_ms(encoder, setting, pixels)
    assert est is not None
    return est


def _side_for(ms_per_px: float, target_ms: float) -> int:
    """The side of a 4:3 image whose estimate is ``target_ms`` at ``ms_per_px``."""
    return int(math.sqrt(target_ms / ms_per_px / 12)) * 4


def _seconds(job: dict[str, Any], a: str, b: str) -> float:
    ta, tb = parse_iso(job[a]), parse_iso(job[b])
    assert ta is not None and tb is not None, job
    return (tb - ta).total_seconds()


def test_an_encode_that_cannot_finish_ends_typed_inside_its_invocation_and_is_not_retried(stack):
    timeouts_before = stack.processor.stats.get(WORKER_TIMEOUT, 0)
    image_id = upload(stack, photo_bytes(2400, 1800, "jpeg", seed=81), "slow.jpg")["image_id"]
    t0 = time.monotonic()
    job_id = submit_job(stack, image_id, NEVER_ESTIMATED)
    small_image = upload(stack, photo_bytes(320, 240, "jpeg", seed=82), "small.jpg")["image_id"]
    small_id = submit_job(stack, small_image, SMALL)  # queued after the long one
    done = wait_jobs(stack, [job_id, small_id], timeout=60)
    ended_s = time.monotonic() - t0
    job, small = done[job_id], done[small_id]
    assert job["status"] == "failed" and job["error"]["code"] == "timeout", job
    assert "stopped after" in job["error"]["message"] and "processor timeout" in job["error"]["message"]
    # stopped by the worker's own deadline inside the invocation, not killed by the runtime
    assert _seconds(job, "started_at", "finished_at") < TIMEOUT_S
    assert stack.processor.stats.get(WORKER_TIMEOUT, 0) == timeouts_before
    # the small job queued after it completed meanwhile (the other worker)
    assert small["status"] == "succeeded", small
    assert parse_iso(small["finished_at"]) < parse_iso(job["finished_at"])
    # the message was deleted: past the visibility timeout it has not come back
    time.sleep(VISIBILITY_S + 2)
    with api(stack) as c:
        again = c.get(f"/jobs/{job_id}").json()
    assert again["status"] == "failed" and int(again["attempts"]) == 1, again
    assert list_keys(s3(stack), DEST_BUCKET, f"outputs/{image_id}/") == []
    print(f"FIGURES timeout job ended {ended_s:.1f} s after it was queued (processor timeout {TIMEOUT_S} s)")


def test_work_no_setting_fits_is_refused_at_once_and_a_faster_setting_is_adapted(stack, monkeypatch):
    limit_ms = TIMEOUT_S * 1000
    fastest = _scaled("avif", 10, 1_000_000, monkeypatch) / 1e6  # ms per pixel at speed 10
    asked = _scaled("avif", 6, 1_000_000, monkeypatch) / 1e6
    # refused: even speed 10 needs more than the whole timeout
    side = _side_for(fastest, 1.5 * limit_ms / SAFETY)
    refused_img = upload(stack, photo_bytes(side, side * 3 // 4, "jpeg", seed=83, quality=60), "big.jpg")
    refused_id = submit_job(stack, refused_img["image_id"], {"format": "avif", "quality": 50})
    # adapted: speed 6 needs more than the timeout, speed 10 a small share of it
    side = _side_for(asked, 1.1 * limit_ms / SAFETY)  # still adapts (not refused) up to a CPU slowdown of ≈ 8
    assert _scaled("avif", 10, side * side * 3 // 4, monkeypatch) * SAFETY < 0.4 * limit_ms
    adapted_img = upload(stack, photo_bytes(side, side * 3 // 4, "jpeg", seed=84), "mid.jpg")
    adapted_id = submit_job(stack, adapted_img["image_id"], {"format": "avif", "quality": 50})
    done = wait_jobs(stack, [refused_id, adapted_id], timeout=60)

    refused = done[refused_id]
    assert refused["status"] == "failed" and refused["error"]["code"] == "over_time_budget", refused
    msg = refused["error"]["message"]
    assert "processor timeout" in msg and "resize to at most" in msg, msg
    assert int(refused["attempts"]) == 1
    assert _seconds(refused, "started_at", "finished_at") < TIMEOUT_S / 2  # refused, not attempted

    adapted = done[adapted_id]
    assert adapted["status"] == "succeeded", adapted
    facts = adapted["facts"]["budget"]
    assert facts["adapted"]["field"] == "avif.speed" and facts["adapted"]["from"] == 6
    assert facts["adapted"]["to"] > 6 and facts["setting"] == facts["adapted"]["to"]
    assert adapted["result"]["format"] == "avif"


def _kill_when_running(stack: Any, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with api(stack) as c:
        while time.monotonic() < deadline:
            status = c.get(f"/jobs/{job_id}").json()["status"]
            pids = stack.processor.busy_pids()
            if status == "running" and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                return
            assert status not in ("succeeded", "failed"), "finished before it could be killed"
            time.sleep(0.05)
    pytest.fail("the job never ran")


def test_an_attempt_killed_by_the_runtime_is_not_rerun(stack):
    image_id = upload(stack, photo_bytes(2400, 1800, "jpeg", seed=85), "killed.jpg")["image_id"]
    job_id = submit_job(stack, image_id, NEVER_ESTIMATED)
    _kill_when_running(stack, job_id)  # as a memory kill or the Lambda timeout would
    job = wait_job(stack, job_id, timeout=60)
    # the redelivery (after the visibility timeout, past the killed attempt's deadline) fails it
    # instead of running it again: a rerun would have ended `timeout` at its own deadline
    assert job["status"] == "failed" and job["error"]["code"] == "attempt_killed", job
    assert int(job["attempts"]) == 2
    assert _seconds(job, "started_at", "finished_at") < TIMEOUT_S / 2
    assert list_keys(s3(stack), DEST_BUCKET, f"outputs/{image_id}/") == []


def test_a_transient_fault_still_retries(stack):
    a = upload(stack, photo_bytes(64, 48, "jpeg", seed=86), "transient.jpg")
    r = httpx.post(stack.endpoint_url + CONTROL_PATH, timeout=10, json={
        "service": "s3", "method": "GET", "path_contains": a["key"].split("/")[1], "times": BOTO_TRIES})
    assert r.status_code == 201, r.text
    job_id = submit_job(stack, a["image_id"], SMALL)
    # the first delivery fails transiently; the redelivery comes after its deadline, and the
    # attempt that ended (not killed) is retried, not failed `attempt_killed`
    job = wait_job(stack, job_id, timeout=60)
    assert job["status"] == "succeeded", job
    assert int(job["attempts"]) == 2


def _between_avif_and_jpeg(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A size AVIF cannot encode in the time even at speed 10, while JPEG takes a small share."""
    limit_ms = TIMEOUT_S * 1000
    fastest = _scaled("avif", 10, 1_000_000, monkeypatch) / 1e6
    side = _side_for(fastest, 1.5 * limit_ms / SAFETY)
    w, h = side, side * 3 // 4
    assert _scaled("jpeg:turbo", 1, w * h, monkeypatch) * SAFETY < 0.5 * limit_ms
    return w, h


def test_best_format_skips_a_candidate_that_cannot_fit(stack, monkeypatch):
    w, h = _between_avif_and_jpeg(monkeypatch)
    img = upload(stack, photo_bytes(w, h, "jpeg", seed=87, quality=60), "best.jpg")
    job = wait_job(stack, submit_job(stack, img["image_id"], {"format": "best", "quality": 70}), timeout=60)
    assert job["status"] == "succeeded", job
    per_format = job["facts"]["search"]["per_format"]
    assert "needs" in per_format["avif"]["skipped"] and "processor timeout" in per_format["avif"]["skipped"]
    assert job["result"]["format"] in ("jpeg", "webp")
    assert "avif" in job["facts"]["budget"]["skipped"]


def test_a_sweep_reports_cells_that_cannot_fit_as_skipped(stack, monkeypatch):
    from pipeline.client import Client

    w, h = _between_avif_and_jpeg(monkeypatch)
    img = upload(stack, photo_bytes(w, h, "jpeg", seed=88, quality=60), "sweep.jpg")
    with Client(stack.api_url, TEST_API_KEY) as client:
        started = client.sweep(img["image_id"], {"formats": ["jpeg", "avif"], "qualities": [50, 70]})
        sweep = client.wait_sweep(started["sweep_id"], timeout=120)
    assert {(p["format"], p["quality"]) for p in sweep["points"]} == {("jpeg", 50), ("jpeg", 70)}
    skipped = sweep.get("skipped") or []
    assert {(c["format"], c["quality"]) for c in skipped} == {("avif", 50), ("avif", 70)}, sweep
    assert all("needs" in c["skipped"] for c in skipped)


def test_an_encode_that_needs_more_memory_than_the_processor_has_is_refused_at_once(stack):
    import io

    from PIL import Image

    from imagepipe.core.budget import MEMORY_MARGIN_MB, memory_mb

    # a size whose AVIF encode cannot fit the processor's memory even with nothing else in it
    w, h = 7600, 5600
    assert memory_mb("avif", w * h) > MEMORY_MB - MEMORY_MARGIN_MB
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((w, h)).convert("RGB").save(buf, "JPEG", quality=80)
    img = upload(stack, buf.getvalue(), "huge.jpg")
    job = wait_job(stack, submit_job(stack, img["image_id"], {"format": "avif", "quality": 50}), timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "over_memory_budget", job
    assert "processor memory" in job["error"]["message"] and "resize to at most" in job["error"]["message"]
    assert int(job["attempts"]) == 1
    assert _seconds(job, "started_at", "finished_at") < TIMEOUT_S / 2  # refused, not attempted
    assert list_keys(s3(stack), DEST_BUCKET, f"outputs/{img['image_id']}/") == []


def test_a_jxl_effort_that_needs_ten_times_the_memory_is_refused_with_a_lighter_effort_offered(stack):
    import io

    from PIL import Image

    from imagepipe.core.budget import MEMORY_MARGIN_MB, memory_mb

    w, h = 2000, 1500  # 3 MP: effort 9 needs ≈ 0.9 GB, more than this 1024 MB processor has free
    assert memory_mb("jxl", w * h, setting=9) > MEMORY_MB - MEMORY_MARGIN_MB - 150
    assert memory_mb("jxl", w * h, setting=7) < 300
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((w, h)).convert("RGB").save(buf, "JPEG", quality=80)
    img = upload(stack, buf.getvalue(), "jxl9.jpg")
    job = wait_job(stack, submit_job(stack, img["image_id"], {"format": "jxl", "quality": 80,
                                                              "jxl": {"effort": 9}}), timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "over_memory_budget", job
    assert "jxl.effort 7 or lower" in job["error"]["message"]
    assert int(job["attempts"]) == 1
    assert list_keys(s3(stack), DEST_BUCKET, f"outputs/{img['image_id']}/") == []
