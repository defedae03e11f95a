"""AWS event shapes built by the local stack, and the API Gateway response mapping."""

from __future__ import annotations

import base64

import pytest

from pipeline.stack.apigw import Route, to_http
from pipeline.stack.events import batch_item_failures, http_api_event, scheduled_event, sqs_event


def test_sqs_event_shape():
    msg = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "Body": '{"type": "job"}',
        "MD5OfBody": "abc",
        "Attributes": {
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDA",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "job"}},
    }
    event = sqs_event([msg], "arn:aws:sqs:us-east-1:123456789012:q")
    (rec,) = event["Records"]
    assert rec["messageId"] == "m-1" and rec["receiptHandle"] == "rh-1" and rec["body"] == '{"type": "job"}'
    assert rec["eventSource"] == "aws:sqs" and rec["awsRegion"] == "us-east-1"
    assert rec["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:q"
    assert rec["attributes"]["ApproximateReceiveCount"] == "2"
    assert rec["attributes"]["SentTimestamp"] == "1700000000000"
    assert rec["messageAttributes"]["kind"] == {
        "stringValue": "job",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert rec["md5OfBody"] == "abc"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, None),  # unknown id: whole batch fails
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{}]}, None),
        ("not a dict", None),
    ],
)
def test_batch_item_failures_rules(response, expected):
    assert batch_item_failures(response, ["a", "b", "c"]) == expected


def test_scheduled_event_shape():
    e = scheduled_event("rule-x", now=0)
    assert e["detail-type"] == "Scheduled Event" and e["source"] == "aws.events" and e["detail"] == {}
    assert e["time"] == "1970-01-01T00:00:00Z"
    assert e["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/rule-x"]


def test_http_api_event_text_body_and_headers():
    e = http_api_event(
        "post",
        "/jobs",
        "a=1&b=2&a=3",
        [
            ("Content-Type", "application/json"),
            ("X-Api-Key", "k"),
            ("Cookie", "s=1; t=2"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
            ("User-Agent", "ua"),
        ],
        b'{"x": 1}',
        "127.0.0.1",
        route_key="ANY /{proxy+}",
        path_parameters={"proxy": "jobs"},
        now=1.5,
    )
    assert e["version"] == "2.0" and e["routeKey"] == "ANY /{proxy+}"
    assert e["rawPath"] == "/jobs" and e["rawQueryString"] == "a=1&b=2&a=3"
    assert e["headers"]["x-api-key"] == "k" and e["headers"]["x-multi"] == "1,2"
    assert "cookie" not in e["headers"] and e["cookies"] == ["s=1", "t=2"]
    assert e["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert e["pathParameters"] == {"proxy": "jobs"}
    http = e["requestContext"]["http"]
    assert http == {
        "method": "POST",
        "path": "/jobs",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "ua",
    }
    assert e["requestContext"]["stage"] == "$default" and e["requestContext"]["timeEpoch"] == 1500
    assert e["body"] == '{"x": 1}' and e["isBase64Encoded"] is False


def test_http_api_event_binary_body_is_base64():
    e = http_api_event("PUT", "/x", "", [("content-type", "image/png")], b"\x89PNG\x00", "1.2.3.4")
    assert e["isBase64Encoded"] is True and base64.b64decode(e["body"]) == b"\x89PNG\x00"
    assert "queryStringParameters" not in e


def test_http_api_event_without_body():
    e = http_api_event("GET", "/images", "", [], b"", "1.2.3.4")
    assert "body" not in e and e["isBase64Encoded"] is False


def test_response_mapping():
    assert to_http({"statusCode": 201, "headers": {"X-A": "1"}, "body": "hi", "cookies": ["c=1"]}) == (
        201,
        {"x-a": "1"},
        ["c=1"],
        b"hi",
    )
    assert (
        to_http({"statusCode": 200, "body": base64.b64encode(b"\x00").decode(), "isBase64Encoded": True})[3]
        == b"\x00"
    )
    status, headers, _, body = to_http({"ok": True})  # no statusCode: API Gateway infers 200 JSON
    assert status == 200 and headers["content-type"] == "application/json" and body == b'{"ok": true}'
    with pytest.raises(TypeError):
        to_http(object())


def test_route_matching():
    proxy = Route("ANY", "/{proxy+}")
    assert proxy.match("GET", "/jobs/abc") == {"proxy": "jobs/abc"}
    assert proxy.match("GET", "/") is None
    assert Route("GET", "/jobs/{id}").match("GET", "/jobs/j1") == {"id": "j1"}
    assert Route("GET", "/jobs/{id}").match("POST", "/jobs/j1") is None
    assert Route("ANY", "$default").match("DELETE", "/anything") == {}
