"""service/sweeps.py against moto (in-process): fan-out messages, a redelivered part is not
counted twice, the last part closes the sweep, permanent and final-attempt failures recorded, a
fan-out that could not be sent completely still closes, a part outliving its image is "missing"."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from imagepipe.core.limits import Limits
from imagepipe.errors import InvalidRecipe, Throttled, TransientError
from imagepipe.service import sweeps
from imagepipe.service.backend import Backend
from imagepipe.service.jobs import JobRunner
from imagepipe.service.messages import SweepPartMessage, parse_body
from imagepipe.service.records import now_iso
from tests.unit.imagegen import photo_bytes
from tests.unit.service_env import mocked_backend

GRID = {"formats": ["jpeg", "webp"], "qualities": [40, 80]}


@pytest.fixture
def backend() -> Any:
    with mocked_backend() as b:
        yield b


def _image(backend: Any, data: bytes) -> str:
    image_id = uuid.uuid4().hex
    key = f"{backend.config.upload_prefix}{image_id}/p.jpg"
    backend.records.put_image({"image_id": image_id, "key": key, "filename": "p.jpg",
                               "status": "pending_upload", "created_at": now_iso()})
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=data)
    return image_id


def _messages(backend: Any) -> list[SweepPartMessage]:
    sqs = backend.sqs
    out: list[SweepPartMessage] = []
    while True:
        resp = sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
        msgs = resp.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.extend(w for w in parse_body(m["Body"]) if isinstance(w, SweepPartMessage))
            sqs.delete_message(QueueUrl=backend.config.queue_url, ReceiptHandle=m["ReceiptHandle"])


def test_create_runs_parts_and_redelivery_is_idempotent(backend: Any) -> None:
    image_id = _image(backend, photo_bytes(96, 64, "jpeg", seed=2))
    started = sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": GRID}))
    msgs = _messages(backend)
    assert [m.part for m in msgs] == [0, 1] and started["parts"] == 2
    runner = JobRunner(backend, Limits())
    assert runner.handle(msgs[0]) == "succeeded"
    mid = sweeps.get_sweep(backend, started["sweep_id"])
    assert mid["status"] == "running" and mid["progress"]["parts_done"] == 1 and len(mid["points"]) == 2
    assert runner.handle(msgs[0]) == "skipped"  # duplicate delivery: nothing counted twice
    assert runner.handle(msgs[1]) == "succeeded"
    done = sweeps.get_sweep(backend, started["sweep_id"])
    assert done["status"] == "succeeded" and done["progress"]["parts_done"] == 2
    assert [p["label"] for p in done["points"]] == ["jpeg-q40", "jpeg-q80", "webp-q40", "webp-q80"]
    assert all(p["download_url"] for p in done["points"])
    assert runner.handle(msgs[1]) == "skipped"


def test_permanent_error_fails_part_and_sweep(backend: Any) -> None:
    image_id = _image(backend, b"not an image at all")
    started = sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": GRID}))
    runner = JobRunner(backend, Limits())
    assert [runner.handle(m) for m in _messages(backend)] == ["failed", "failed"]
    sweep = sweeps.get_sweep(backend, started["sweep_id"])
    assert sweep["status"] == "failed" and sweep["failed_parts"] == ["p000", "p001"]
    assert {e["code"] for e in sweep["errors"]} == {"unsupported_format"}


def test_transient_error_retries_then_final_attempt_records_failure(backend: Any, monkeypatch: Any) -> None:
    image_id = _image(backend, photo_bytes(64, 48, "jpeg"))
    started = sweeps.create_sweep(backend, json.dumps({"image_id": image_id,
                                                       "grid": {"formats": ["jpeg"], "qualities": [50]}}))
    [msg] = _messages(backend)

    def flaky(*_a: Any, **_k: Any) -> bytes:
        raise TransientError("S3 blip")

    monkeypatch.setattr(backend.storage.__class__, "get_source", flaky)
    runner = JobRunner(backend, Limits())
    with pytest.raises(TransientError):
        runner.handle(msg)
    assert sweeps.get_sweep(backend, started["sweep_id"])["status"] == "running"
    with pytest.raises(TransientError):
        runner.handle(msg, final_attempt=True)
    sweep = sweeps.get_sweep(backend, started["sweep_id"])
    assert sweep["status"] == "failed" and sweep["errors"][0]["code"] == "retries_exhausted"


def test_validation(backend: Any) -> None:
    image_id = _image(backend, photo_bytes(64, 48, "jpeg"))
    with pytest.raises(InvalidRecipe) as ei:
        sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": GRID,
                                                 "resize": {"width": 0}}))
    assert ei.value.details[0]["field"].startswith("resize")
    assert sweeps.split_sweep_id(sweeps.new_sweep_id(image_id)) == image_id
    assert sweeps.split_sweep_id(f"{image_id}-0011223344556677") is None  # a job id is not a sweep id


def test_dead_lettered_part_is_marked_failed_by_the_reconciler(backend: Any) -> None:
    from imagepipe.service.messages import sweep_part_message
    from imagepipe.service.reconcile import reconcile

    image_id = _image(backend, photo_bytes(64, 48, "jpeg"))
    started = sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": GRID}))
    msgs = _messages(backend)
    runner = JobRunner(backend, Limits())
    assert runner.handle(msgs[0]) == "succeeded"
    sid = started["sweep_id"]
    for part in (0, 1):  # part 0 succeeded already: a late dead letter must not flip it
        body = sweep_part_message(sid, image_id, part)
        backend.sqs.send_message(QueueUrl=backend.config.dlq_url, MessageBody=body)
    report = reconcile(backend, hold_seconds=60)
    assert report.marked_failed == [f"{sid}#p001"] and report.unmapped == 1
    sweep = sweeps.get_sweep(backend, sid)
    assert sweep["status"] == "failed" and sweep["progress"]["parts_done"] == 1
    assert sweep["failed_parts"] == ["p001"] and sweep["errors"][0]["code"] == "retries_exhausted"
    assert [p["format"] for p in sweep["points"]] == ["jpeg", "jpeg"]
    # a failure report for a part that succeeded changes nothing
    assert sweeps.SweepStore(backend.records.table).finish_part(sid, 0, "failed", {"error": {"code": "x"}}) \
        == "failed"
    assert sweeps.get_sweep(backend, sid)["progress"]["parts_done"] == 1


def test_list_by_image_reads_its_partition_without_parts(backend: Any) -> None:
    a = _image(backend, photo_bytes(64, 48, "jpeg"))
    b = _image(backend, photo_bytes(64, 48, "jpeg", seed=1))
    grid = json.dumps({"image_id": a, "grid": {"formats": ["jpeg"], "qualities": [50]}})
    first = sweeps.create_sweep(backend, grid)["sweep_id"]
    second = sweeps.create_sweep(backend, grid)["sweep_id"]
    other = {"image_id": b, "grid": {"formats": ["webp"], "qualities": [50]}}
    sweeps.create_sweep(backend, json.dumps(other))
    runner = JobRunner(backend, Limits())
    for m in _messages(backend):
        assert runner.handle(m) == "succeeded"
    listed = sweeps.list_sweeps(backend, {"image_id": a})
    assert [s["sweep_id"] for s in listed["items"]] == [second, first] and listed["next_cursor"] is None
    assert all(s["status"] == "succeeded" and "points" not in s and s["progress"]["parts_done"] == 1
               for s in listed["items"])
    assert len(sweeps.list_sweeps(backend, {"image_id": a, "limit": "1"})["items"]) == 1
    assert len(sweeps.list_sweeps(backend, {})["items"]) == 3


def test_parts_that_could_not_be_enqueued_are_failed_so_the_sweep_closes(backend: Any,
                                                                          monkeypatch: Any) -> None:
    image_id = _image(backend, photo_bytes(64, 48, "jpeg"))
    real_enqueue = Backend.enqueue
    sent: list[str] = []

    def enqueue_once(self: Backend, body: str) -> str:
        if sent:
            raise Throttled("AWS throttled the request (Throttling)")
        sent.append(body)
        return real_enqueue(self, body)

    monkeypatch.setattr(Backend, "enqueue", enqueue_once)
    with pytest.raises(Throttled):
        sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": GRID}))
    monkeypatch.setattr(Backend, "enqueue", real_enqueue)

    [listed] = sweeps.list_sweeps(backend, {"image_id": image_id})["items"]
    sid = listed["sweep_id"]
    mid = sweeps.get_sweep(backend, sid)
    assert mid["failed_parts"] == ["p001"] and mid["errors"][0]["code"] == "throttled"
    assert mid["status"] not in sweeps.TERMINAL  # part 0 is still on its way

    [msg] = _messages(backend)
    assert msg.part == 0
    assert JobRunner(backend, Limits()).handle(msg) == "succeeded"
    done = sweeps.get_sweep(backend, sid)
    assert done["status"] == "failed" and done["progress"]["parts_done"] == 1
    assert [p["format"] for p in done["points"]] == ["jpeg", "jpeg"]


def test_a_part_finishing_after_its_image_was_deleted_is_missing_not_an_aws_error(backend: Any,
                                                                                monkeypatch: Any) -> None:
    image_id = _image(backend, photo_bytes(64, 48, "jpeg"))
    sid = sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": GRID}))["sweep_id"]
    msg = _messages(backend)[0]
    real_get_source = backend.storage.__class__.get_source

    def deleted_meanwhile(self: Any, bucket: str, key: str) -> bytes:
        data = real_get_source(self, bucket, key)
        backend.records.delete_image_records(image_id)  # DELETE /images/{id} while the part runs
        return data

    monkeypatch.setattr(backend.storage.__class__, "get_source", deleted_meanwhile)
    assert JobRunner(backend, Limits()).handle(msg) == "missing"
    assert sweeps.SweepStore(backend.records.table).get(sid) is None


# --- grid.metrics: SSIMULACRA2 on request, kept through DynamoDB; a bad name is a typed 422 ---


def test_points_carry_ssimulacra2_through_the_service(backend: Any) -> None:
    image_id = _image(backend, photo_bytes(96, 64, "png", seed=3))
    grid = {"formats": ["jpeg", "png"], "qualities": [30, 90], "metrics": ["ssimulacra2"]}
    started = sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": grid}))
    runner = JobRunner(backend, Limits())
    assert [runner.handle(m) for m in _messages(backend)] == ["succeeded", "succeeded"]
    done = sweeps.get_sweep(backend, started["sweep_id"])
    assert done["status"] == "succeeded"
    assert done["grid"]["metrics"] == ["ssim", "psnr", "ssimulacra2"]
    by = {p["label"]: p for p in done["points"]}
    assert set(by) == {"jpeg-q30", "jpeg-q90", "png-lossless"}
    assert float(by["jpeg-q30"]["ssimulacra2"]) < float(by["jpeg-q90"]["ssimulacra2"]) < 100.0
    assert float(by["png-lossless"]["ssimulacra2"]) == 100.0


def test_a_bad_metric_is_a_typed_error(backend: Any) -> None:
    image_id = _image(backend, photo_bytes(32, 32, "png"))
    body = {"image_id": image_id, "grid": {"formats": ["jpeg"], "qualities": [50], "metrics": ["vmaf"]}}
    with pytest.raises(InvalidRecipe) as ei:
        sweeps.create_sweep(backend, json.dumps(body))
    assert ei.value.details[0]["field"] == "grid.metrics"
    assert _messages(backend) == []
