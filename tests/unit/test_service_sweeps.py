"""service/sweeps.py edge cases against moto (in-process): a sweep whose fan-out could not be
sent completely still reaches a terminal status."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from imagepipe.core.limits import Limits
from imagepipe.errors import Throttled
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
    resp = backend.sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
    return [w for m in resp.get("Messages", []) for w in parse_body(m["Body"])
            if isinstance(w, SweepPartMessage)]


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
