"""DynamoDB records: conditional job transitions, Decimal numbers, newest-first pages."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from imagepipe.errors import BadRequest, NotFound
from imagepipe.service.records import (
    decode_cursor,
    encode_cursor,
    from_dynamo,
    make_job_id,
    now_iso,
    split_job_id,
    to_dynamo,
)
from tests.unit.service_env import mocked_backend


@pytest.fixture
def records():
    with mocked_backend() as b:
        yield b.records


def _image(records, **extra):
    image_id = uuid.uuid4().hex
    records.put_image({"image_id": image_id, "key": f"uploads/{image_id}/a.png", "filename": "a.png",
                       "status": "pending_upload", "created_at": now_iso(), **extra})
    return image_id


def _job(records, image_id, h="0123456789abcdef"):
    job, created = records.create_job({"job_id": make_job_id(image_id, h), "image_id": image_id,
                                       "recipe": {"quality": 80}, "recipe_hash": h,
                                       "created_at": now_iso(), "attempts": 0})
    return job, created


def test_float_decimal_round_trip():
    value = {"a": 1.5, "b": [0.1, 2, True, None], "c": float("inf"), "d": {"e": 3.0}}
    stored = to_dynamo(value)
    assert stored["a"] == Decimal("1.5") and stored["b"][0] == Decimal("0.1")
    assert stored["c"] is None and stored["b"][2] is True
    assert from_dynamo(stored) == {"a": 1.5, "b": [0.1, 2, True, None], "c": None, "d": {"e": 3}}


def test_recipe_and_facts_are_stored_as_json_text_and_read_back_as_documents(records):
    """The two documents are one string attribute each in the table; every read decodes them
    with the numbers a nested map gave (non-finite floats null, 2.0 as 2), and an item written
    with nested maps (before the text form) still reads."""
    facts = {"input": {"width": 4, "exif": {"gps_present": False}}, "ratio": 2.0, "ssim": 0.97,
             "psnr": float("inf"), "fast_paths": ["jpeg_draft"]}
    image_id = _image(records, recipe={"quality": 80, "resize": {"width": 10}})
    job, _ = _job(records, image_id)
    records.claim_job(job["job_id"])
    assert records.succeed_job(job["job_id"], {"bytes": 10, "ssim": 0.97}, facts)
    records.set_image_facts(image_id, facts["input"])
    key = {"pk": f"IMAGE#{image_id}", "sk": f"JOB#{job['job_id']}"}
    raw = records.table.get_item(Key=key, ConsistentRead=True)["Item"]
    assert isinstance(raw["recipe"], str) and isinstance(raw["facts"], str)
    assert raw["result"]["ssim"] == Decimal("0.97")  # what tables and charts read stays typed
    stored = records.get_job(job["job_id"])
    assert stored["recipe"] == {"quality": 80}
    assert stored["facts"] == {**facts, "ratio": 2, "psnr": None}
    image = records.get_image(image_id)
    assert image["recipe"] == {"quality": 80, "resize": {"width": 10}} and image["facts"] == facts["input"]
    # an item from before the text form: nested maps
    records.table.update_item(Key=key, UpdateExpression="SET recipe = :r, facts = :f",
                              ExpressionAttributeValues={":r": {"quality": 70},
                                                         ":f": {"ratio": Decimal("1.5")}})
    old = records.get_job(job["job_id"])
    assert old["recipe"] == {"quality": 70} and old["facts"] == {"ratio": 1.5}


def test_new_image_and_job_are_written_together_and_unprocessed_items_retried(records, monkeypatch):
    client = records.table.meta.client
    real = client.batch_write_item
    calls: list[int] = []

    def leaves_the_job_once(RequestItems):  # noqa: N803 - boto3's parameter name
        (name, puts), = RequestItems.items()
        calls.append(len(puts))
        if len(calls) == 1:  # DynamoDB throttled the second item: it comes back unprocessed
            real(RequestItems={name: puts[:1]})
            return {"UnprocessedItems": {name: puts[1:]}}
        return real(RequestItems=RequestItems)

    monkeypatch.setattr(client, "batch_write_item", leaves_the_job_once)
    image_id = uuid.uuid4().hex
    image = {"image_id": image_id, "key": f"uploads/{image_id}/a.png", "status": "pending_upload",
             "created_at": now_iso(), "recipe": {"quality": 80}, "recipe_hash": "0123456789abcdef"}
    job = {"job_id": make_job_id(image_id, "0123456789abcdef"), "image_id": image_id,
           "recipe": {"quality": 80}, "recipe_hash": "0123456789abcdef", "created_at": now_iso(),
           "attempts": 0}
    records.put_new_image_and_job(image, job)
    assert calls == [2, 1]
    assert records.get_image(image_id)["recipe"] == {"quality": 80}
    assert records.get_job(job["job_id"])["status"] == "queued"


def test_new_image_and_job_left_unprocessed_is_throttled(records, monkeypatch):
    from imagepipe.errors import Throttled

    client = records.table.meta.client
    monkeypatch.setattr("imagepipe.service.records.time.sleep", lambda s: None)
    monkeypatch.setattr(client, "batch_write_item",
                        lambda RequestItems: {"UnprocessedItems": RequestItems})  # noqa: N803
    image_id = uuid.uuid4().hex
    with pytest.raises(Throttled):
        records.put_new_image_and_job(
            {"image_id": image_id, "key": "k", "created_at": now_iso()},
            {"job_id": make_job_id(image_id, "0" * 16), "image_id": image_id, "created_at": now_iso()})


def test_job_ids():
    image_id = "f" * 32
    assert split_job_id(make_job_id(image_id, "0" * 16)) == (image_id, "0" * 16)
    assert split_job_id("nope") is None
    assert split_job_id(image_id + "-" + "g" * 16) is None


def test_create_job_is_idempotent(records):
    image_id = _image(records)
    job, created = _job(records, image_id)
    assert created and job["status"] == "queued"
    again, created_again = _job(records, image_id)
    assert not created_again and again["job_id"] == job["job_id"]
    assert len(records.jobs_for_image(image_id)) == 1


def test_legal_transitions(records):
    image_id = _image(records)
    job, _ = _job(records, image_id)
    claimed = records.claim_job(job["job_id"])
    assert claimed["status"] == "running" and claimed["attempts"] == 1
    # a redelivery may re-claim a running job (its worker died)
    assert records.claim_job(job["job_id"])["attempts"] == 2
    assert records.succeed_job(job["job_id"], {"bytes": 10, "ssim": 0.98}, {"x": 1.25})
    stored = records.get_job(job["job_id"])
    assert stored["status"] == "succeeded" and stored["result"]["ssim"] == 0.98
    assert stored["facts"] == {"x": 1.25}


def test_illegal_transitions_are_refused(records):
    image_id = _image(records)
    job, _ = _job(records, image_id)
    job_id = job["job_id"]
    assert not records.succeed_job(job_id, {}, {}), "queued -> succeeded must be refused"
    records.claim_job(job_id)
    assert records.succeed_job(job_id, {"bytes": 1}, {})
    # nothing leaves a terminal state
    assert records.claim_job(job_id) is None
    assert not records.fail_job(job_id, "corrupt_image", "late failure")
    assert not records.succeed_job(job_id, {"bytes": 2}, {})
    stored = records.get_job(job_id)
    assert stored["status"] == "succeeded" and stored["result"] == {"bytes": 1}
    assert "error" not in stored


def test_failed_is_terminal(records):
    image_id = _image(records)
    job, _ = _job(records, image_id)
    assert records.fail_job(job["job_id"], "corrupt_image", "bad bytes")
    assert records.claim_job(job["job_id"]) is None
    assert not records.fail_job(job["job_id"], "retries_exhausted", "again")
    assert records.get_job(job["job_id"])["error"] == {"code": "corrupt_image", "message": "bad bytes"}


def test_transitions_on_unknown_job_are_refused(records):
    ghost = make_job_id(uuid.uuid4().hex, "0" * 16)
    assert records.claim_job(ghost) is None
    assert not records.fail_job(ghost, "x", "y")
    assert records.get_job(ghost) is None
    assert records.get_job("not-a-job") is None


def test_images_newest_first_with_cursor(records):
    ids = [_image(records) for _ in range(5)]
    page1, cursor = records.list_images(limit=2)
    assert [i["image_id"] for i in page1] == ids[::-1][:2]
    assert cursor
    page2, cursor2 = records.list_images(limit=2, cursor=cursor)
    page3, _ = records.list_images(limit=2, cursor=cursor2)
    seen = [i["image_id"] for i in page1 + page2 + page3]
    assert seen == ids[::-1]
    assert all("pk" not in i and "gsi1sk" not in i for i in page1)


def test_jobs_newest_first(records):
    image_id = _image(records)
    jobs = [_job(records, image_id, h=f"{i:016x}")[0]["job_id"] for i in range(3)]
    page, _ = records.list_jobs(limit=10)
    assert [j["job_id"] for j in page] == jobs[::-1]


@pytest.mark.parametrize("bad", [
    "!!!", "eyJ9", "x" * 5000,
    encode_cursor({"pk": "a", "sk": "b", "gsi1pk": "JOBS", "gsi1sk": "c"}),
    encode_cursor({"pk": "a" * 2000, "sk": "b", "gsi1pk": "IMAGES", "gsi1sk": "c"}),
    encode_cursor({"pk": "", "sk": "b", "gsi1pk": "IMAGES", "gsi1sk": "c"}),
])
def test_bad_cursor_is_bad_request(bad):
    with pytest.raises(BadRequest):
        decode_cursor(bad, "IMAGES")


def test_record_upload_and_facts(records):
    image_id = _image(records)
    assert records.record_upload(image_id, f"uploads/{image_id}/a.png", 1234, '"etag"')
    records.set_image_facts(image_id, {"width": 10, "height": 5})
    records.set_image_facts(image_id, {"width": 99})  # first writer wins
    image = records.get_image(image_id)
    assert image["status"] == "uploaded" and image["bytes"] == 1234
    assert image["facts"] == {"width": 10, "height": 5}
    unknown = uuid.uuid4().hex
    assert not records.record_upload(unknown, f"uploads/{unknown}/a.png", 1, None)


def test_delete_image_records(records):
    image_id = _image(records)
    _job(records, image_id, "0" * 16)
    _job(records, image_id, "1" * 16)
    other = _image(records)
    assert records.delete_image_records(image_id) == 3
    assert records.get_image(image_id) is None and records.jobs_for_image(image_id) == []
    assert records.get_image(other) is not None


def test_create_job_racing_a_delete_is_a_typed_not_found(records, monkeypatch):
    image_id = _image(records)
    _job(records, image_id)
    # the job exists (conditional put refused) but is deleted before it can be read back
    monkeypatch.setattr(type(records), "get_job", lambda self, job_id: None)
    with pytest.raises(NotFound):
        _job(records, image_id)
