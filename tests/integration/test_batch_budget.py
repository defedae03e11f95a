"""A batch that would outlast the processor timeout must not push healthy jobs into the DLQ.

Reproduces the gap found by the reliability suite (docs/reliability.md): ten ~1 s jobs in one
SQS batch against a processor timeout of about four jobs. Without the processor's time budget
the invocation timed out, every unfinished record's receive count went up, and valid jobs ended
``retries_exhausted``. With it, records the invocation has no time for go back to the queue as
fresh messages and every job succeeds exactly once.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

from imagepipe.core import process
from tests.reliability.conftest import jobs_of_image, submit_job, upload, wait_jobs
from tests.unit.imagegen import photo_bytes

SLOW = {"format": "png", "png": {"compress_level": 9}}


def _one_job_wall_s(data: bytes) -> float:
    """How long one job's engine work takes on this machine right now (wall clock)."""
    t0 = time.perf_counter()
    process(data, SLOW)
    return time.perf_counter() - t0


def test_slow_batches_finish_every_job(make_stack):
    # batches of 10 (the template's ProcessorBatchSize allows up to 10; the default 1 never
    # puts two records in one invocation). The timeout is 4x one job as measured here and now
    # (at least 4 s): a batch of ten always outlasts it, while one job alone keeps a wide
    # margin below it even on a loaded machine (a fixed 4 s timeout failed when other work
    # stretched single ~0.8 s jobs to 4 s and they timed out on their own).
    data = photo_bytes(900, 600)
    timeout = max(4, math.ceil(4 * _one_job_wall_s(data)))
    stack = make_stack(workers=1, processor_timeout=timeout, visibility_timeout=max(3, timeout - 1),
                       max_receive_count=2, batch_size=10)
    image_ids = [upload(stack, data, filename=f"slow-{i}.jpg")["image_id"] for i in range(16)]
    with ThreadPoolExecutor(8) as pool:  # queue them together so the poller takes full batches
        job_ids = list(pool.map(lambda image_id: submit_job(stack, image_id, SLOW), image_ids))

    jobs = wait_jobs(stack, job_ids, timeout=240)

    failed = {j: (v.get("error") or {}).get("code") for j, v in jobs.items() if v["status"] != "succeeded"}
    assert failed == {}
    for image_id in image_ids:
        assert len(jobs_of_image(stack, image_id)) == 1
