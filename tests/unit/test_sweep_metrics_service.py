"""``grid.metrics`` through service/sweeps.py against moto (in-process): the stored grid keeps
the request for SSIMULACRA2, every part's points carry it after the DynamoDB round trip, and a
bad metric name is a typed 422 error naming ``grid.metrics``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from imagepipe.core.limits import Limits
from imagepipe.errors import InvalidRecipe
from imagepipe.service import sweeps
from imagepipe.service.jobs import JobRunner
from imagepipe.service.messages import SweepPartMessage, parse_body
from imagepipe.service.records import now_iso
from tests.unit.imagegen import photo_bytes
from tests.unit.service_env import mocked_backend


@pytest.fixture
def backend() -> Any:
    with mocked_backend() as b:
        yield b


def _image(backend: Any, data: bytes) -> str:
    image_id = uuid.uuid4().hex
    key = f"{backend.config.upload_prefix}{image_id}/p.png"
    backend.records.put_image({"image_id": image_id, "key": key, "filename": "p.png",
                               "status": "pending_upload", "created_at": now_iso()})
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=data)
    return image_id


def _parts(backend: Any) -> list[SweepPartMessage]:
    resp = backend.sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
    return [w for m in resp.get("Messages", []) for w in parse_body(m["Body"])
            if isinstance(w, SweepPartMessage)]


def test_points_carry_ssimulacra2_through_the_service(backend: Any) -> None:
    image_id = _image(backend, photo_bytes(96, 64, "png", seed=3))
    grid = {"formats": ["jpeg", "png"], "qualities": [30, 90], "metrics": ["ssimulacra2"]}
    started = sweeps.create_sweep(backend, json.dumps({"image_id": image_id, "grid": grid}))
    runner = JobRunner(backend, Limits())
    assert [runner.handle(m) for m in _parts(backend)] == ["succeeded", "succeeded"]
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
    assert _parts(backend) == []
