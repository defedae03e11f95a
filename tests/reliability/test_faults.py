"""Faults: a worker SIGKILLed mid-job, the whole stack SIGKILLed mid-batch and restarted,
duplicated/reordered S3 events, and injected transient S3/DynamoDB errors.

Every test asserts the invariants: each acknowledged upload+recipe ends as exactly one job
record and (when it succeeded) exactly one output object; nothing is silently dropped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from imagepipe.core.recipe import parse_recipe
from pipeline.stack.faults import CONTROL_PATH, ENV_FLAG
from pipeline.stack.runtime import WORKER_CRASHED
from tests.reliability.conftest import (
    DEST_BUCKET,
    SOURCE_BUCKET,
    api,
    assert_serving,
    jobs_of_image,
    list_keys,
    record_figures,
    s3,
    sqs,
    submit_job,
    upload,
    wait_job,
    wait_jobs,
)
from tests.unit.imagegen import photo_bytes

BOTO_TRIES = 4  # requests per boto3 call in the service (imagepipe.service.aws: 1 + 3 retries)
SMALL = {"resize": {"width": 48, "height": 48, "fit": "inside"}, "format": "webp", "quality": 60}


def _slow_recipe(n: int) -> dict[str, Any]:
    """A recipe that keeps a worker busy for a few seconds on a 1600×1000 image (PNG level 9)."""
    return {"format": "png", "png": {"compress_level": 9}, "ops": {"sharpen": 0.1 * n}}


def _one_output_one_record(stack: Any, image_id: str, n_recipes: int = 1) -> list[dict[str, Any]]:
    jobs = jobs_of_image(stack, image_id)
    assert len(jobs) == n_recipes, jobs
    keys = list_keys(s3(stack), DEST_BUCKET, f"outputs/{image_id}/")
    succeeded = [j for j in jobs if j["status"] == "succeeded"]
    assert len(keys) == len(succeeded), (keys, jobs)
    assert sorted(keys) == sorted(j["result"]["output_key"] for j in succeeded)
    return jobs


def _wait_drained(stack: Any, timeout: float = 60) -> None:
    """Until the processing queue has nothing visible or in flight."""
    q = sqs(stack)
    url = q.get_queue_url(QueueName="imagepipe-processing")["QueueUrl"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = q.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]) == 0:
            return
        time.sleep(0.3)
    pytest.fail("processing queue not drained")


# --- a worker killed mid-job -------------------------------------------------------------------


def _kill_when_running(stack: Any, job_id: str, timeout: float = 60) -> list[int]:
    """Wait until the job runs on a worker, then SIGKILL the busy worker(s)."""
    runtime = stack.processor
    deadline = time.monotonic() + timeout
    with api(stack) as c:
        while time.monotonic() < deadline:
            status = c.get(f"/jobs/{job_id}").json()["status"]
            pids = runtime.busy_pids()
            if status == "running" and pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                return pids
            if status in ("succeeded", "failed"):
                pytest.fail(f"job finished before it could be killed: {status}")
            time.sleep(0.05)
    pytest.fail("job never ran")


@pytest.mark.slow
def test_worker_sigkilled_mid_job_completes_on_redelivery(local_stack):
    data = photo_bytes(1600, 1000, "jpeg", seed=21)
    image_id = upload(local_stack, data)["image_id"]
    crashed_before = local_stack.processor.stats.get(WORKER_CRASHED, 0)
    job_id = submit_job(local_stack, image_id, _slow_recipe(1))
    killed = _kill_when_running(local_stack, job_id)
    job = wait_job(local_stack, job_id, timeout=120)
    assert job["status"] == "succeeded", job
    assert int(job["attempts"]) >= 2  # the killed run and the redelivered one
    assert local_stack.processor.stats.get(WORKER_CRASHED, 0) > crashed_before
    _one_output_one_record(local_stack, image_id)
    assert local_stack.processor.alive() == local_stack.processor.size  # the worker was replaced
    assert_serving(local_stack)
    record_figures("worker_sigkill", {"killed_pids": len(killed), "attempts": int(job["attempts"])})


@pytest.mark.slow
def test_worker_killed_on_every_attempt_fails_cleanly_via_the_dlq(local_stack):
    """Killed on all 3 deliveries: the message dead-letters and the job ends ``failed``
    with ``retries_exhausted`` (marked by the reconciler), never stuck in ``running``."""
    max_receive = int(local_stack.env["IMAGEPIPE_MAX_RECEIVE_COUNT"])
    data = photo_bytes(1600, 1000, "jpeg", seed=22)
    image_id = upload(local_stack, data)["image_id"]
    job_id = submit_job(local_stack, image_id, _slow_recipe(2))
    for _ in range(max_receive):
        _kill_when_running(local_stack, job_id, timeout=60)
        with api(local_stack) as c:  # let the runtime notice the death before the next poll
            deadline = time.monotonic() + 10
            while local_stack.processor.busy_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert c.get(f"/jobs/{job_id}").status_code == 200
    job = wait_job(local_stack, job_id, timeout=90)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "retries_exhausted", job
    assert list_keys(s3(local_stack), DEST_BUCKET, f"outputs/{image_id}/") == []
    assert len(jobs_of_image(local_stack, image_id)) == 1
    with api(local_stack) as c:
        health = c.get("/health").json()
    assert health["dlq_depth"] >= 1, health
    assert_serving(local_stack)


# --- duplicated and reordered S3 events ---------------------------------------------------------


def _s3_event(bucket: str, key: str, size: int, name: str = "ObjectCreated:Post") -> str:
    from urllib.parse import quote_plus

    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T00:00:00.000Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads-to-queue",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": "0" * 32,
                          "sequencer": "00"}},
    }]})


@pytest.mark.slow
def test_duplicated_and_reordered_s3_events_yield_one_output_and_one_record(local_stack):
    names = ["dup a.jpg", "dup+b.jpg", "dúp c%.jpg"]
    replies = [upload(local_stack, photo_bytes(80, 60, "jpeg", seed=30 + i), n, recipe=SMALL)
               for i, n in enumerate(names)]
    wait_jobs(local_stack, [r["job_id"] for r in replies])
    deleted = upload(local_stack, photo_bytes(40, 30, "jpeg", seed=40), "gone.jpg", recipe=SMALL)
    wait_job(local_stack, deleted["job_id"])
    with api(local_stack) as c:
        assert c.delete(f"/images/{deleted['image_id']}").status_code == 204

    q = sqs(local_stack)
    url = local_stack.env["IMAGEPIPE_QUEUE_URL"]
    bodies = []
    for r in reversed(replies):  # newest first, each three times, interleaved
        bodies += [_s3_event(SOURCE_BUCKET, r["key"], 100)] * 3
    bodies.insert(2, json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": SOURCE_BUCKET}))
    bodies.append(_s3_event(SOURCE_BUCKET, deleted["key"], 100))  # a late duplicate after DELETE
    bodies.append(_s3_event(DEST_BUCKET, "outputs/x/y.webp", 100))  # never processed: recursion guard
    for start in range(0, len(bodies), 10):
        q.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + 10])])
    _wait_drained(local_stack)

    for r in replies:
        jobs = _one_output_one_record(local_stack, r["image_id"])
        assert jobs[0]["status"] == "succeeded" and jobs[0]["job_id"] == r["job_id"]
    # the deleted image stays deleted: no record, no original, no output
    with api(local_stack) as c:
        assert c.get(f"/images/{deleted['image_id']}").status_code == 404
    assert list_keys(s3(local_stack), DEST_BUCKET, f"outputs/{deleted['image_id']}/") == []
    assert list_keys(s3(local_stack), SOURCE_BUCKET, f"uploads/{deleted['image_id']}/") == []
    assert list_keys(s3(local_stack), DEST_BUCKET, "outputs/x/") == []
    record_figures("duplicate_events", {"messages_sent": len(bodies), "images": len(replies)})


def test_duplicate_job_requests_are_one_job(local_stack):
    image_id = upload(local_stack, photo_bytes(64, 48, "jpeg", seed=50))["image_id"]
    ids = {submit_job(local_stack, image_id, SMALL) for _ in range(5)}
    # the same recipe spelled differently is the same job
    ids.add(submit_job(local_stack, image_id, {**SMALL, "version": 1, "metadata": "strip"}))
    assert len(ids) == 1
    assert wait_job(local_stack, ids.pop())["status"] == "succeeded"
    _wait_drained(local_stack)
    _one_output_one_record(local_stack, image_id)


# --- the whole stack SIGKILLed mid-batch --------------------------------------------------------


@pytest.mark.slow
def test_stack_sigkilled_mid_batch_processes_every_acknowledged_upload_once(serve_process, tmp_path):
    data_dir = tmp_path / "crash"
    stack = serve_process(data_dir)
    # one 480x320 source for 16 images, PNG level 9: a fraction of a second per job, so a batch of
    # 10 stays far below the processor timeout even on a loaded machine
    data = photo_bytes(480, 320, "jpeg", seed=100)
    heavy = {"format": "png", "png": {"compress_level": 9}}
    recipes = [heavy, {**heavy, "resize": {"width": 400}}]

    def one(i: int) -> list[dict[str, Any]]:
        reply = upload(stack, data, f"batch-{i}.jpg", recipe=recipes[0])  # S3-event path
        out = [{"image_id": reply["image_id"], "job_id": reply["job_id"]}]
        if i % 2 == 0:  # and a second recipe through POST /jobs
            job_id = submit_job(stack, reply["image_id"], recipes[1])
            out.append({"image_id": reply["image_id"], "job_id": job_id})
        return out

    with ThreadPoolExecutor(8) as pool:  # acknowledged faster than 2 workers can process
        acknowledged = [a for batch in pool.map(one, range(16)) for a in batch]
    # kill while work is in flight: as soon as a job is running
    before: dict[str, str] = {}
    deadline = time.monotonic() + 30
    with api(stack) as c:
        while time.monotonic() < deadline:
            before = {a["job_id"]: c.get(f"/jobs/{a['job_id']}").json()["status"] for a in acknowledged}
            if "running" in before.values():
                break
            time.sleep(0.1)
    stack.kill()  # SIGKILL: no shutdown path runs

    stack = serve_process(data_dir)
    jobs = wait_jobs(stack, [a["job_id"] for a in acknowledged], timeout=180)
    assert all(j["status"] == "succeeded" for j in jobs.values()), {
        k: (j["status"], j.get("error")) for k, j in jobs.items() if j["status"] != "succeeded"}
    client = s3(stack)
    per_image: dict[str, int] = {}
    for a in acknowledged:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    for image_id, n in per_image.items():
        _one_output_one_record(stack, image_id, n_recipes=n)
        assert len(list_keys(client, SOURCE_BUCKET, f"uploads/{image_id}/")) == 1
    with api(stack) as c:
        listed = {i["image_id"] for i in c.get("/images", params={"limit": 100}).json()["items"]}
    assert set(per_image) <= listed
    _wait_drained(stack)
    assert_serving(stack)
    states = [before.get(a["job_id"]) for a in acknowledged]
    record_figures("stack_sigkill_restart", {
        "acknowledged_jobs": len(acknowledged),
        "at_kill": {s: states.count(s) for s in sorted(set(map(str, states)))},
        "succeeded_after_restart": sum(1 for j in jobs.values() if j["status"] == "succeeded"),
        "attempts_max": max(int(j["attempts"]) for j in jobs.values()),
    })


# --- injected transient S3 / DynamoDB errors -----------------------------------------------------


def _fault(stack: Any, **rule: Any) -> dict[str, Any]:
    r = httpx.post(stack.endpoint_url + CONTROL_PATH, json=rule, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def _rules(stack: Any) -> dict[int, dict[str, Any]]:
    r = httpx.get(stack.endpoint_url + CONTROL_PATH, timeout=10)
    return {rule["id"]: rule for rule in r.json()["rules"]}


@pytest.mark.slow
def test_transient_errors_are_retried_and_exhausted_ones_dead_letter(serve_process, tmp_path):
    stack = serve_process(tmp_path / "faults", env={ENV_FLAG: "1", "IMAGEPIPE_LOG_LEVEL": "WARNING"})

    # boto3's max_attempts=3 means 3 *retries*: 4 requests per call. BOTO_TRIES failures make
    # exactly one delivery fail, so the message must be redelivered to succeed.
    # 1. S3 GetObject of one original fails BOTO_TRIES times
    a = upload(stack, photo_bytes(64, 48, "jpeg", seed=60), "a.jpg")
    s3_rule = _fault(stack, service="s3", method="GET", path_contains=a["key"].split("/")[1],
                     times=BOTO_TRIES)
    job_a = submit_job(stack, a["image_id"], SMALL)
    # 2. DynamoDB writes of another job are throttled (its claim fails once)
    b = upload(stack, photo_bytes(64, 48, "jpeg", seed=61), "b.jpg")
    job_b_id = f"{b['image_id']}-{parse_recipe(SMALL).recipe_hash()}"
    ddb_rule = _fault(stack, service="dynamodb", target_contains="UpdateItem",
                      body_contains=f"JOB#{job_b_id}", times=BOTO_TRIES)
    job_b = submit_job(stack, b["image_id"], SMALL)
    assert job_b == job_b_id
    done = wait_jobs(stack, [job_a, job_b], timeout=90)
    assert done[job_a]["status"] == "succeeded" and int(done[job_a]["attempts"]) >= 2, done[job_a]
    assert done[job_b]["status"] == "succeeded", done[job_b]
    rules = _rules(stack)
    assert rules[s3_rule["id"]]["hits"] == BOTO_TRIES and rules[ddb_rule["id"]]["hits"] == BOTO_TRIES
    assert int(done[job_b]["attempts"]) >= 1
    _one_output_one_record(stack, a["image_id"])
    _one_output_one_record(stack, b["image_id"])

    # 3. the API under a throttled table: a clean 429/503 with a code, then it recovers
    name = "throttled-upload.jpg"  # only this upload's PutItem matches
    _fault(stack, service="dynamodb", target_contains="PutItem", body_contains=name, times=BOTO_TRIES)
    with api(stack) as c:
        r = c.post("/uploads", json={"filename": name, "content_type": "image/jpeg", "size": 10})
        assert r.status_code in (429, 503), r.text
        assert r.json()["error"]["code"] in ("throttled", "transient_error")
        r = c.post("/uploads", json={"filename": name, "content_type": "image/jpeg", "size": 10})
        assert r.status_code == 201, r.text

    # 4. an original that can never be read: retried to the limit, then DLQ + failed
    c_ = upload(stack, photo_bytes(64, 48, "jpeg", seed=62), "c.jpg")
    _fault(stack, service="s3", method="GET", path_contains=c_["key"].split("/")[1], times=10_000)
    job_c = submit_job(stack, c_["image_id"], SMALL)
    job = wait_job(stack, job_c, timeout=120)
    assert job["status"] == "failed" and job["error"]["code"] == "retries_exhausted", job
    assert list_keys(s3(stack), DEST_BUCKET, f"outputs/{c_['image_id']}/") == []
    deadline = time.monotonic() + 30
    with api(stack) as c:
        while True:
            health = c.get("/health").json()
            if health.get("dlq_depth") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert health["dlq_depth"] >= 1, health
        time.sleep(3)  # the reconciler (every 1 s here) has read the dead letter by now
        health = c.get("/health").json()
        assert health["dlq_depth"] >= 1, health  # still shown: a read dead letter is still there
    assert len(jobs_of_image(stack, c_["image_id"])) == 1
    # the original was never touched
    httpx.delete(stack.endpoint_url + CONTROL_PATH, timeout=10)
    assert s3(stack).head_object(Bucket=SOURCE_BUCKET, Key=c_["key"])["ContentLength"] > 0
    assert_serving(stack)
    record_figures("transient_faults", {
        "s3_getobject_failures_injected": BOTO_TRIES, "dynamodb_updateitem_throttles_injected": BOTO_TRIES,
        "api_putitem_throttles_injected": BOTO_TRIES, "dead_lettered_jobs": 1,
        "dlq_depth": health["dlq_depth"],
    })
