"""The job runner against moto, with a stand-in engine (the real engine is exercised by the
integration tests through the local stack)."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from imagepipe.errors import CorruptImage, TransientError
from imagepipe.service.jobs import JobRunner, new_job
from imagepipe.service.messages import JobMessage, ObjectCreated
from imagepipe.service.records import now_iso
from tests.unit.service_env import HASH, FakeEngine, mocked_backend


@pytest.fixture
def backend():
    with mocked_backend() as b:
        yield b


def _uploaded_image(backend, recipe: dict | None = None) -> dict:
    image_id = uuid.uuid4().hex
    key = f"{backend.config.upload_prefix}{image_id}/a b+c.png"
    image = {"image_id": image_id, "key": key, "filename": "a b+c.png", "status": "pending_upload",
             "created_at": now_iso(), "recipe": recipe, "recipe_hash": HASH if recipe is not None else None}
    backend.records.put_image(image)
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=b"ORIGINAL-BYTES")
    return image


def _queued_job(backend, image) -> str:
    job = new_job(image, {"format": "webp"}, HASH, trigger="api", preset="web")
    backend.records.create_job(job)
    return job["job_id"]


def _outputs(backend) -> list[str]:
    resp = backend.clients.s3.list_objects_v2(Bucket=backend.config.dest_bucket)
    return [o["Key"] for o in resp.get("Contents", [])]


def test_job_succeeds_writes_output_and_result(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    engine = FakeEngine()
    assert JobRunner(backend, engine=engine).run(job_id) == "succeeded"
    job = backend.records.get_job(job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 1 and job["preset"] == "web"
    result = job["result"]
    key = f"outputs/{image['image_id']}/{HASH}.webp"
    assert result["output_key"] == key and result["bytes"] == 6 and result["original_bytes"] == 14
    assert result["ssim"] == 0.97 and result["psnr"] is None  # inf is not storable
    stages = {"download", "upload", "record", "service_total", "queue_wait", "decode", "encode"}
    assert stages <= set(result["timings_ms"])
    assert _outputs(backend) == [key]
    assert backend.records.get_image(image["image_id"])["facts"]["width"] == 4
    # the source bucket holds only the untouched original
    src = backend.clients.s3.get_object(Bucket=backend.config.source_bucket, Key=image["key"])
    assert src["Body"].read() == b"ORIGINAL-BYTES"


def test_the_result_is_written_before_the_image_facts(backend, monkeypatch):
    """A client polls the job: its result goes first; the image's facts follow (the emulator
    serializes writes, so writing them side by side could delay the result)."""
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    order: list[str] = []
    records = backend.records

    def logged(name: str):
        real = getattr(records, name)

        def call(*args, **kwargs):
            order.append(name)
            return real(*args, **kwargs)
        return call

    for name in ("succeed_job", "set_image_facts"):
        monkeypatch.setattr(records, name, logged(name))
    assert JobRunner(backend, engine=FakeEngine()).run(job_id) == "succeeded"
    assert order == ["succeed_job", "set_image_facts"]
    assert backend.records.get_image(image["image_id"])["facts"]["width"] == 4


def test_duplicate_run_is_a_no_op(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    engine = FakeEngine()
    runner = JobRunner(backend, engine=engine)
    assert runner.run(job_id) == "succeeded"
    assert runner.run(job_id) == "skipped"
    assert len(engine.calls) == 1 and len(_outputs(backend)) == 1
    assert len(backend.records.jobs_for_image(image["image_id"])) == 1


def test_permanent_engine_error_fails_job_and_keeps_original(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    runner = JobRunner(backend, engine=FakeEngine(error=CorruptImage("truncated PNG")))
    assert runner.run(job_id) == "failed"
    job = backend.records.get_job(job_id)
    assert job["status"] == "failed" and job["error"] == {"code": "corrupt_image", "message": "truncated PNG"}
    assert backend.storage.head(backend.config.source_bucket, image["key"]) is not None
    assert _outputs(backend) == []


def test_engine_bug_is_internal_error_not_a_retry_loop(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    assert JobRunner(backend, engine=FakeEngine(error=ZeroDivisionError("boom"))).run(job_id) == "failed"
    assert backend.records.get_job(job_id)["error"]["code"] == "internal_error"


def test_transient_error_raises_and_final_attempt_marks_retries_exhausted(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    runner = JobRunner(backend, engine=FakeEngine(error=TransientError("S3 blip")))
    with pytest.raises(TransientError):
        runner.run_guarded(job_id, final_attempt=False)
    assert backend.records.get_job(job_id)["status"] == "running"
    with pytest.raises(TransientError):
        runner.run_guarded(job_id, final_attempt=True)
    job = backend.records.get_job(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "retries_exhausted"
    assert job["attempts"] == 2


def test_throttling_from_s3_becomes_transient(backend, monkeypatch):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)

    def throttled(**_kw):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")

    monkeypatch.setattr(backend.clients.s3, "get_object", throttled)
    with pytest.raises(TransientError):
        JobRunner(backend, engine=FakeEngine()).run(job_id)


def test_object_created_runs_the_upload_recipe(backend):
    image = _uploaded_image(backend, recipe={"format": "webp"})
    ev = ObjectCreated(bucket=backend.config.source_bucket, key=image["key"], size=14, etag="e",
                       event_name="ObjectCreated:Post")
    runner = JobRunner(backend, engine=FakeEngine())
    assert runner.object_created(ev) == "succeeded"
    assert runner.object_created(ev) == "skipped"  # duplicate event
    stored = backend.records.get_image(image["image_id"])
    assert stored["status"] == "uploaded" and stored["bytes"] == 14
    jobs = backend.records.jobs_for_image(image["image_id"])
    assert len(jobs) == 1 and jobs[0]["trigger"] == "s3" and len(_outputs(backend)) == 1


def test_object_created_without_recipe_only_records_upload(backend):
    image = _uploaded_image(backend)
    ev = ObjectCreated(backend.config.source_bucket, image["key"], 14, None, "ObjectCreated:Put")
    assert JobRunner(backend, engine=FakeEngine()).object_created(ev) == "uploaded"
    assert backend.records.jobs_for_image(image["image_id"]) == []


def test_object_created_refuses_outputs_and_foreign_buckets(backend):
    engine = FakeEngine()
    runner = JobRunner(backend, engine=engine)
    cfg = backend.config
    put, src = "ObjectCreated:Put", cfg.source_bucket
    assert runner.object_created(ObjectCreated(cfg.dest_bucket, "uploads/x/y.png", 1, None, put)) == "refused"
    assert runner.object_created(ObjectCreated(src, "outputs/x/y.png", 1, None, put)) == "refused"
    stranger = f"uploads/{uuid.uuid4().hex}/y.png"
    assert runner.object_created(ObjectCreated(src, stranger, 1, None, put)) == "ignored"
    assert engine.calls == []


def test_object_created_runs_the_job_written_at_upload(backend):
    """POST /uploads writes the image with its job: the S3 event records the upload and runs
    that very job (no second job, the upload's facts stored)."""
    image = _uploaded_image(backend, recipe={"format": "webp"})
    job = new_job(image, {"format": "webp"}, HASH, trigger="s3", preset=None)
    backend.records.create_job(job)
    backend.clients.table.update_item(Key={"pk": f"IMAGE#{image['image_id']}", "sk": "IMAGE"},
                                      UpdateExpression="SET job_id = :j",
                                      ExpressionAttributeValues={":j": job["job_id"]})
    ev = ObjectCreated(backend.config.source_bucket, image["key"], 14, '"etag"', "ObjectCreated:Post")
    assert JobRunner(backend, engine=FakeEngine()).object_created(ev) == "succeeded"
    stored = backend.records.get_image(image["image_id"])
    assert (stored["status"], stored["bytes"], stored["etag"]) == ("uploaded", 14, '"etag"')
    jobs = backend.records.jobs_for_image(image["image_id"])
    assert [j["job_id"] for j in jobs] == [job["job_id"]] and jobs[0]["status"] == "succeeded"


def test_object_created_for_another_key_of_a_known_image_changes_nothing(backend):
    image = _uploaded_image(backend, recipe={"format": "webp"})
    other = image["key"].rsplit("/", 1)[0] + "/other.png"
    engine = FakeEngine()
    ev = ObjectCreated(backend.config.source_bucket, other, 3, None, "ObjectCreated:Put")
    assert JobRunner(backend, engine=engine).object_created(ev) == "ignored"
    assert backend.records.get_image(image["image_id"])["status"] == "pending_upload"
    assert engine.calls == [] and backend.records.jobs_for_image(image["image_id"]) == []


def test_record_upload_is_conditional_on_the_key(backend):
    image = _uploaded_image(backend)
    records = backend.records
    assert records.record_upload(image["image_id"], image["key"] + "x", 1, None) is None
    assert records.record_upload("not-an-id", image["key"], 1, None) is None
    got = records.record_upload(image["image_id"], image["key"], 14, "e", at="2026-01-01T00:00:00.000Z")
    assert (got["status"], got["bytes"], got["uploaded_at"]) == ("uploaded", 14, "2026-01-01T00:00:00.000Z")
    again = records.record_upload(image["image_id"], image["key"], 14, "e")
    assert again["uploaded_at"] == "2026-01-01T00:00:00.000Z"  # the first landing time stays


class _CountingStorage:
    """Wraps the real storage and counts downloads per key."""

    def __init__(self, storage):
        self._storage, self.downloads = storage, []

    def __getattr__(self, name):
        return getattr(self._storage, name)

    def get_source(self, bucket, key):
        self.downloads.append(key)
        return self._storage.get_source(bucket, key)


def _with_counting_storage(backend):
    import dataclasses

    counting = _CountingStorage(backend.storage)
    return dataclasses.replace(backend, storage=counting), counting


def test_source_key_hint_is_downloaded_while_claiming_and_used_once(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    hinted, storage = _with_counting_storage(backend)
    engine = FakeEngine()
    assert JobRunner(hinted, engine=engine).run(job_id, source_key=image["key"]) == "succeeded"
    assert storage.downloads == [image["key"]]
    assert engine.calls == [len(b"ORIGINAL-BYTES")]


def test_a_wrong_source_key_hint_is_ignored_for_the_claimed_key(backend):
    image = _uploaded_image(backend)
    decoy = f"{backend.config.upload_prefix}{image['image_id']}/decoy.png"
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=decoy, Body=b"DECOY")
    job_id = _queued_job(backend, image)
    hinted, storage = _with_counting_storage(backend)
    engine = FakeEngine()
    assert JobRunner(hinted, engine=engine).run(job_id, source_key=decoy) == "succeeded"
    assert engine.calls == [len(b"ORIGINAL-BYTES")]  # the record decides, not the message (DECOY: 5)
    assert storage.downloads[-1] == image["key"]
    assert backend.records.get_job(job_id)["result"]["original_bytes"] == 14


def test_a_hint_for_a_finished_or_missing_job_does_no_work(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    runner = JobRunner(backend, engine=FakeEngine())
    assert runner.run(job_id) == "succeeded"
    engine = FakeEngine()
    assert JobRunner(backend, engine=engine).run(job_id, source_key=image["key"]) == "skipped"
    missing = f"{uuid.uuid4().hex}-{HASH}"
    assert JobRunner(backend, engine=engine).run(missing, source_key="uploads/nope/x.png") == "missing"
    assert engine.calls == []


def test_recipe_hint_processes_while_claiming_and_the_record_decides(backend):
    """With the recipe in the message the engine runs beside the claim; a hint whose recipe
    differs from the claimed record's is thrown away and the job redone from the record."""
    from imagepipe.core.recipe import parse_recipe

    image = _uploaded_image(backend)
    webp = parse_recipe({"format": "webp"})
    job = new_job(image, webp.model_dump(mode="json"), webp.recipe_hash(), trigger="api", preset=None)
    backend.records.create_job(job)
    job_id = job["job_id"]
    engine = FakeEngine()
    runner = JobRunner(backend, engine=engine)
    assert runner.run(job_id, source_key=image["key"], recipe_hint={"format": "webp"}) == "succeeded"
    assert engine.calls == [14]

    image2 = _uploaded_image(backend)
    job2 = _queued_job(backend, image2)
    seen: list[str] = []

    def recording_engine(data, recipe, limits):
        seen.append(recipe.format)
        return FakeEngine()(data, recipe, limits)

    runner2 = JobRunner(backend, engine=recording_engine)
    assert runner2.run(job2, source_key=image2["key"], recipe_hint={"format": "png"}) == "succeeded"
    assert seen[-1] == "webp"  # the record's recipe made the stored output
    assert backend.records.get_job(job2)["status"] == "succeeded"


def test_a_failing_hint_does_not_fail_the_job_it_disagrees_with(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)

    def engine(data, recipe, limits):
        if recipe.format == "png":
            raise CorruptImage("only the hinted recipe fails")
        return FakeEngine()(data, recipe, limits)

    runner = JobRunner(backend, engine=engine)
    assert runner.run(job_id, source_key=image["key"], recipe_hint={"format": "png"}) == "succeeded"


def test_a_hinted_engine_error_fails_the_job_like_the_normal_path(backend):
    image = _uploaded_image(backend)
    job_id = _queued_job(backend, image)
    engine = FakeEngine(error=CorruptImage("bad bytes"))
    runner = JobRunner(backend, engine=engine)
    assert runner.run(job_id, source_key=image["key"], recipe_hint={"format": "webp"}) == "failed"
    job = backend.records.get_job(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "corrupt_image"


def test_the_engine_really_runs_beside_the_claim(backend):
    """The claim waits (bounded) until the engine has started: only a runner that processes
    the hinted recipe while claiming lets it see that."""
    import dataclasses
    import threading

    from imagepipe.core.recipe import parse_recipe

    image = _uploaded_image(backend)
    webp = parse_recipe({"format": "webp"})
    job = new_job(image, webp.model_dump(mode="json"), webp.recipe_hash(), trigger="api", preset=None)
    backend.records.create_job(job)
    started = threading.Event()
    seen_during_claim: list[bool] = []

    class Records:
        def __getattr__(self, name):
            return getattr(backend.records, name)

        def claim_job(self, job_id):
            seen_during_claim.append(started.wait(5))
            return backend.records.claim_job(job_id)

    def engine(data, recipe, limits):
        started.set()
        return FakeEngine()(data, recipe, limits)

    runner = JobRunner(dataclasses.replace(backend, records=Records()), engine=engine)
    assert runner.run(job["job_id"], source_key=image["key"], recipe_hint={"format": "webp"}) == "succeeded"
    assert seen_during_claim == [True]


def _claim_and_download_order(backend, recipe_hint):
    """Run a hinted job with a download that can only finish once the claim started (or after
    1 s): whether the claim was sent before the download was over, and the outcome."""
    import dataclasses
    import threading

    from imagepipe.core.recipe import parse_recipe

    image = _uploaded_image(backend)
    webp = parse_recipe({"format": "webp"})
    job = new_job(image, webp.model_dump(mode="json"), webp.recipe_hash(), trigger="api", preset=None)
    backend.records.create_job(job)
    claiming, downloaded = threading.Event(), threading.Event()

    class Storage:
        def __getattr__(self, name):
            return getattr(backend.storage, name)

        def get_source(self, bucket, key):
            claiming.wait(1.0)
            data = backend.storage.get_source(bucket, key)
            downloaded.set()
            return data

    class Records:
        def __getattr__(self, name):
            return getattr(backend.records, name)

        def claim_job(self, job_id):
            before = not downloaded.is_set()
            claiming.set()
            self.claimed_before_download = before
            return backend.records.claim_job(job_id)

    records = Records()
    runner = JobRunner(dataclasses.replace(backend, records=records, storage=Storage()), engine=FakeEngine())
    outcome = runner.run(job["job_id"], source_key=image["key"], recipe_hint=recipe_hint)
    return records.claimed_before_download, outcome


def test_with_the_engine_ahead_the_claim_waits_for_the_download(backend):
    """The download and the claim would fight for the GIL and delay the engine: when the engine
    goes ahead, the claim is sent once the original is in memory."""
    assert _claim_and_download_order(backend, {"format": "webp"}) == (False, "succeeded")


def test_with_only_the_download_ahead_the_claim_goes_beside_it(backend):
    """Without a recipe hint the engine waits for the claim anyway: download and claim overlap."""
    assert _claim_and_download_order(backend, None) == (True, "succeeded")


def test_a_redelivered_message_claims_before_any_work(backend):
    """Only a first delivery works ahead of the claim: a redelivery of a finished job runs
    nothing, not even speculatively."""
    from imagepipe.core.recipe import parse_recipe

    image = _uploaded_image(backend)
    webp = parse_recipe({"format": "webp"})
    job = new_job(image, webp.model_dump(mode="json"), webp.recipe_hash(), trigger="api", preset=None)
    backend.records.create_job(job)
    msg = JobMessage(job["job_id"], image["image_id"], image["key"], {"format": "webp"})
    assert JobRunner(backend, engine=FakeEngine()).handle(msg) == "succeeded"
    engine = FakeEngine()
    assert JobRunner(backend, engine=engine).handle(msg, first_delivery=False) == "skipped"
    assert engine.calls == []


def test_result_carries_ssimulacra2_only_when_the_engine_measured_it():
    from imagepipe.service.jobs import summarize

    base = {"output": {"format": "webp"}, "metrics": {"ssim": 0.98, "psnr": 40.0}}
    assert "ssimulacra2" not in summarize(base, "k", {})
    scored = {**base, "metrics": {**base["metrics"], "ssimulacra2": 71.5}}
    assert summarize(scored, "k", {})["ssimulacra2"] == 71.5
