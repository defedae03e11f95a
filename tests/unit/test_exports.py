"""CSV exports (service/exports.py) against moto: every matching job exactly once across slices
that re-queue themselves after a part, progress on the way, and the request's validation."""

from __future__ import annotations

import csv
import io
import json

import pytest

from imagepipe.errors import BadRequest, NotFound
from imagepipe.service import exports
from pipeline.seed import seed, synthetic_jobs
from tests.unit.service_env import mocked_backend


@pytest.fixture
def backend(monkeypatch):
    import moto.s3.models as s3_models

    monkeypatch.setattr(s3_models, "S3_UPLOAD_PART_MIN_SIZE", 1)  # tiny parts, so slices happen
    with mocked_backend() as b:
        yield b


def _queued(backend) -> list[dict]:
    resp = backend.sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
    for m in resp.get("Messages", []):
        backend.sqs.delete_message(QueueUrl=backend.config.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in resp.get("Messages", [])]


def test_export_in_slices_writes_each_matching_job_once(backend, monkeypatch):
    seed(backend.records.table, 400, days=20, seed=3)
    want = {j["job_id"] for j in synthetic_jobs(400, days=20, seed=3) if j["out_format"] == "webp"}
    exp = exports.create_export(backend, json.dumps({"format": "webp"}))
    assert exp["expected_rows"] == len(want) and exp["status"] == "queued"
    assert _queued(backend) == [{"type": "export", "export_id": exp["export_id"]}]
    monkeypatch.setattr(exports, "PART_BYTES", 3000)  # a part every ~15 rows
    monkeypatch.setattr(exports, "PAGE", 10)
    outcomes, progress = [], []
    while True:
        outcomes.append(exports.run_export(backend, exp["export_id"], slice_s=0.0))
        state = exports.get_export(backend, exp["export_id"])
        progress.append(state["progress"])
        if outcomes[-1] != "continued":
            break
        assert _queued(backend) == [{"type": "export", "export_id": exp["export_id"]}]
    assert outcomes[-1] == "succeeded" and len(outcomes) > 3
    assert progress == sorted(progress) and progress[-1] == 1.0 and progress[-2] < 1.0
    state = exports.get_export(backend, exp["export_id"])
    assert state["rows"] == len(want) and state["download_url"]
    key = f"outputs/_exports/{exp['export_id']}.csv"
    body = backend.clients.s3.get_object(Bucket=backend.config.dest_bucket, Key=key)["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["job_id"] for r in rows if r["job_id"] in want] == [r["job_id"] for r in rows]
    assert sorted(r["job_id"] for r in rows) == sorted(want)
    assert exports.run_export(backend, exp["export_id"]) == "skipped"  # a redelivery after the end


def test_export_request_and_lookup_errors(backend):
    with pytest.raises(BadRequest):
        exports.create_export(backend, json.dumps({"colour": "red"}))
    with pytest.raises(BadRequest):
        exports.create_export(backend, json.dumps({"from": "2026-02-30"}))
    with pytest.raises(NotFound):
        exports.get_export(backend, "0" * 32)
    with pytest.raises(NotFound):
        exports.get_export(backend, "../x")
