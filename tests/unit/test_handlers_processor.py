"""Processor and reconciler handlers with SQS/scheduled events on moto's in-process mock."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import imagepipe.handlers.processor as processor_handler
import imagepipe.handlers.reconciler as reconciler_handler
from imagepipe.errors import TransientError
from imagepipe.service.jobs import JobRunner, new_job
from imagepipe.service.messages import job_message
from imagepipe.service.records import now_iso
from tests.unit.service_env import HASH, FakeEngine, mocked_backend

EVENTS = Path(__file__).resolve().parents[2] / "events"


class SelectiveEngine(FakeEngine):
    """Fails transiently for inputs of one particular length."""

    def __init__(self, fail_len: int) -> None:
        super().__init__()
        self.fail_len = fail_len

    def __call__(self, data: bytes, recipe: Any, limits: Any):
        if len(data) == self.fail_len:
            self.calls.append(len(data))
            raise TransientError("simulated throttling")
        return super().__call__(data, recipe, limits)


@pytest.fixture
def backend(monkeypatch):
    with mocked_backend() as b:
        monkeypatch.setattr(processor_handler, "RUNNER", JobRunner(b, engine=FakeEngine()))
        monkeypatch.setattr(reconciler_handler, "BACKEND", b)
        yield b


def sqs_event(*bodies: str, receive_count: int = 1) -> dict[str, Any]:
    return {"Records": [{
        "messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1",
    } for i, body in enumerate(bodies)]}


def s3_body(bucket: str, *keys: str) -> str:
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Post",
                                    "s3": {"bucket": {"name": bucket},
                                           "object": {"key": k, "size": 3, "eTag": "e"}}} for k in keys]})


def image_with_job(backend, name: str = "a b.png", body: bytes = b"abc", recipe: dict | None = None):
    image_id = uuid.uuid4().hex
    key = f"uploads/{image_id}/{name}"
    image = {"image_id": image_id, "key": key, "filename": name, "status": "pending_upload",
             "created_at": now_iso(), "recipe": recipe, "recipe_hash": HASH if recipe is not None else None}
    backend.records.put_image(image)
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=body)
    job = new_job(image, recipe or {}, HASH, trigger="api", preset=None)
    backend.records.create_job(job)
    return image, job["job_id"]


def test_mixed_batch_reports_only_the_failed_record(backend, monkeypatch):
    ok_image, ok_job = image_with_job(backend, body=b"abc")
    bad_image, bad_job = image_with_job(backend, body=b"abcdefgh")
    monkeypatch.setattr(processor_handler, "RUNNER", JobRunner(backend, engine=SelectiveEngine(fail_len=8)))
    test_event = json.loads(json.loads((EVENTS / "sqs_s3_test_event.json").read_text())["Records"][0]["body"])
    event = sqs_event(job_message(ok_job, ok_image["image_id"]), json.dumps(test_event),
                      job_message(bad_job, bad_image["image_id"]))
    resp = processor_handler.handler(event, None)
    assert resp == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert backend.records.get_job(ok_job)["status"] == "succeeded"
    assert backend.records.get_job(bad_job)["status"] == "running"  # will be retried


def test_final_attempt_marks_failed_and_still_reports(backend, monkeypatch):
    image, job_id = image_with_job(backend, body=b"abcdefgh")
    monkeypatch.setattr(processor_handler, "RUNNER", JobRunner(backend, engine=SelectiveEngine(fail_len=8)))
    resp = processor_handler.handler(sqs_event(job_message(job_id, image["image_id"]), receive_count=3), None)
    assert resp == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    job = backend.records.get_job(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "retries_exhausted"


def test_every_s3_record_in_a_message_is_handled(backend):
    imgs = [image_with_job(backend, name=f"photo {i}+x.png", recipe={"format": "webp"})[0] for i in range(3)]
    # S3 encodes spaces as '+' and '+' as %2B
    keys = [f"uploads/{i['image_id']}/photo+{n}%2Bx.png" for n, i in enumerate(imgs)]
    resp = processor_handler.handler(sqs_event(s3_body(backend.config.source_bucket, *keys)), None)
    assert resp == {"batchItemFailures": []}
    for image in imgs:
        assert backend.records.get_image(image["image_id"])["status"] == "uploaded"
        (job,) = backend.records.jobs_for_image(image["image_id"])
        assert job["status"] == "succeeded"


def test_duplicate_s3_events_give_one_output_and_one_record(backend, monkeypatch):
    engine = FakeEngine()
    monkeypatch.setattr(processor_handler, "RUNNER", JobRunner(backend, engine=engine))
    image, _ = image_with_job(backend, name="dup.png", recipe={"format": "webp"})
    body = s3_body(backend.config.source_bucket, image["key"])
    assert processor_handler.handler(sqs_event(body, body), None) == {"batchItemFailures": []}
    assert processor_handler.handler(sqs_event(body), None) == {"batchItemFailures": []}
    assert len(engine.calls) == 1
    outs = backend.clients.s3.list_objects_v2(Bucket=backend.config.dest_bucket).get("Contents", [])
    assert len(outs) == 1
    assert len(backend.records.jobs_for_image(image["image_id"])) == 1


def test_unparseable_message_is_reported(backend):
    resp = processor_handler.handler(sqs_event("{not json", json.dumps({"type": "mystery"})), None)
    assert sorted(f["itemIdentifier"] for f in resp["batchItemFailures"]) == ["m0", "m1"]


def test_reconciler_marks_dead_lettered_jobs_failed(backend):
    image, job_id = image_with_job(backend)
    done_image, done_job = image_with_job(backend)
    backend.records.fail_job(done_job, "corrupt_image", "bad")
    sqs, dlq = backend.clients.sqs, backend.config.dlq_url
    sqs.send_message(QueueUrl=dlq, MessageBody=job_message(job_id, image["image_id"]))
    sqs.send_message(QueueUrl=dlq, MessageBody=job_message(done_job, done_image["image_id"]))
    sqs.send_message(QueueUrl=dlq, MessageBody="garbage")
    scheduled = json.loads((EVENTS / "scheduled.json").read_text())
    report = reconciler_handler.handler(scheduled, None)
    assert report["messages"] == 3 and report["marked_failed"] == [job_id]
    assert report["already_final"] == [done_job] and report["unmapped"] == 1
    job = backend.records.get_job(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "retries_exhausted"
    assert backend.records.get_job(done_job)["error"]["code"] == "corrupt_image"
    # messages stay in the DLQ, hidden so the next run does not spin on them
    attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 3
    assert reconciler_handler.handler(scheduled, None)["messages"] == 0


class ShrinkingClock:
    """A Lambda context clock whose remaining time drops by ``step_ms`` every time it is asked."""

    def __init__(self, start_ms: int, step_ms: int) -> None:
        self.left = start_ms
        self.step = step_ms

    def get_remaining_time_in_millis(self) -> int:
        self.left -= self.step
        return self.left


def _use_clock(monkeypatch, clock: ShrinkingClock) -> None:
    """The handler's time budget reads ``clock`` instead of the Lambda context."""
    monkeypatch.setattr(processor_handler.TimeBudget, "for_context",
                        classmethod(lambda cls, ctx: cls(clock.get_remaining_time_in_millis)))


def queued_bodies(backend) -> list[str]:
    resp = backend.clients.sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
    return [m["Body"] for m in resp.get("Messages", [])]


def test_records_a_batch_has_no_time_for_are_requeued_not_failed(backend, monkeypatch):
    jobs = [image_with_job(backend, name=f"{i}.png") for i in range(3)]
    event = sqs_event(*(job_message(job_id, image["image_id"]) for image, job_id in jobs))
    # 1 s left after the first record: below the 2 s margin, so records 2 and 3 go back to the queue
    clock = ShrinkingClock(start_ms=1_000, step_ms=0)
    _use_clock(monkeypatch, clock)
    resp = processor_handler.handler(event, object())
    assert resp == {"batchItemFailures": []}
    deferred = [event["Records"][1]["body"], event["Records"][2]["body"]]
    assert sorted(queued_bodies(backend)) == sorted(deferred)
    statuses = [backend.records.get_job(job_id)["status"] for _, job_id in jobs]
    assert statuses == ["succeeded", "queued", "queued"]


def test_a_batch_with_time_left_runs_every_record(backend, monkeypatch):
    jobs = [image_with_job(backend, name=f"{i}.png") for i in range(3)]
    event = sqs_event(*(job_message(job_id, image["image_id"]) for image, job_id in jobs))
    clock = ShrinkingClock(start_ms=60_000, step_ms=10)
    _use_clock(monkeypatch, clock)
    assert processor_handler.handler(event, object()) == {"batchItemFailures": []}
    assert {backend.records.get_job(job_id)["status"] for _, job_id in jobs} == {"succeeded"}
    assert queued_bodies(backend) == []
