"""Queue message parsing: S3 keys URL-decoded exactly once, TestEvent ignored, jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagepipe.errors import BadRequest
from imagepipe.service.messages import JobMessage, ObjectCreated, job_message, parse_body

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _s3_body(*keys: str, event: str = "ObjectCreated:Put") -> str:
    return json.dumps({"Records": [
        {"eventSource": "aws:s3", "eventName": event,
         "s3": {"bucket": {"name": "src"}, "object": {"key": k, "size": 7, "eTag": "abc"}}}
        for k in keys
    ]})


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("uploads/i/my+photo.jpg", "uploads/i/my photo.jpg"),
        ("uploads/i/a%2Bb.jpg", "uploads/i/a+b.jpg"),
        ("uploads/i/100%25.jpg", "uploads/i/100%.jpg"),
        ("uploads/i/caf%C3%A9+%E5%86%99%E7%9C%9F.png", "uploads/i/café 写真.png"),
        ("uploads/i/a%252B.jpg", "uploads/i/a%2B.jpg"),  # decoded once, not twice
    ],
)
def test_keys_are_url_decoded_once(encoded, decoded):
    (item,) = parse_body(_s3_body(encoded))
    assert isinstance(item, ObjectCreated)
    assert item.key == decoded and item.bucket == "src" and item.size == 7 and item.etag == "abc"


def test_every_record_in_a_message_is_returned():
    items = parse_body(_s3_body("uploads/a/1.png", "uploads/b/2.png", "uploads/c/3.png"))
    assert [i.key for i in items] == ["uploads/a/1.png", "uploads/b/2.png", "uploads/c/3.png"]


def test_test_event_and_non_creation_events_are_ignored():
    test_event = json.loads(json.loads((EVENTS / "sqs_s3_test_event.json").read_text())["Records"][0]["body"])
    assert parse_body(json.dumps(test_event)) == []
    assert parse_body(_s3_body("uploads/a/1.png", event="ObjectRemoved:Delete")) == []


def test_job_message_round_trip():
    assert parse_body(job_message("j", "i")) == [JobMessage(job_id="j", image_id="i")]


def test_sample_events_parse():
    body = json.loads((EVENTS / "sqs_s3_event.json").read_text())["Records"][0]["body"]
    (item,) = parse_body(body)
    assert item.key.endswith("/holiday photo + café.jpg")
    body = json.loads((EVENTS / "sqs_job_message.json").read_text())["Records"][0]["body"]
    assert isinstance(parse_body(body)[0], JobMessage)


@pytest.mark.parametrize("body", [
    "not json", "[1, 2]", '{"type": "job", "job_id": 1}', '{"hello": 1}',
    '{"Records": [{"eventSource": "aws:sns"}]}',
    '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}',
])
def test_malformed_messages_are_bad_requests(body):
    with pytest.raises(BadRequest):
        parse_body(body)


def test_job_message_hints_round_trip_and_a_big_recipe_is_left_out():
    from imagepipe.service.messages import MAX_RECIPE_HINT

    small = {"format": "webp", "quality": 80}
    [msg] = parse_body(job_message("j", "i", "uploads/i/a.png", small))
    assert msg == JobMessage(job_id="j", image_id="i", source_key="uploads/i/a.png", recipe=small)
    big = {"watermark": {"image_b64": "A" * (MAX_RECIPE_HINT + 1)}}
    [msg] = parse_body(job_message("j", "i", None, big))
    assert msg.recipe is None and msg.source_key is None  # SQS bodies stay far below 256 KiB


def test_job_message_hints_must_have_the_right_types():
    for bad in ({"source_key": 3}, {"recipe": "webp"}):
        with pytest.raises(BadRequest):
            parse_body(json.dumps({"type": "job", "job_id": "j", "image_id": "i", **bad}))
