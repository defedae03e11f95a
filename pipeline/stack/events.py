"""AWS event shapes the local stack feeds the real handlers.

- :func:`sqs_event`        the SQS -> Lambda event source mapping event
- :func:`scheduled_event`  an EventBridge scheduled event
- :func:`http_api_event`   an API Gateway HTTP API payload format 2.0 event
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from pipeline.stack.resources import ACCOUNT_ID, REGION

_SQS_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw
    return out


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """One ``Records[]`` entry from a boto3 ``ReceiveMessage`` message (attributes ``All``)."""
    attrs = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: str(attrs[k]) for k in _SQS_ATTRIBUTES if k in attrs},
        "messageAttributes": {
            k: _message_attribute(v) for k, v in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping passes to the function."""
    return {"Records": [sqs_record(m, queue_arn, region) for m in messages]}


def batch_item_failures(response: Any, message_ids: Iterable[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures response marks failed.

    Returns ``None`` when the whole batch counts as failed (Lambda's rules: a response that
    is not ``None``/a dict, or an item with a missing, empty or unknown ``itemIdentifier``).
    An empty/absent ``batchItemFailures`` means every record succeeded.
    """
    ids = set(message_ids)
    if response is None or (isinstance(response, dict) and not response.get("batchItemFailures")):
        return set()
    if not isinstance(response, dict) or not isinstance(response.get("batchItemFailures"), list):
        return None
    failed: set[str] = set()
    for item in response["batchItemFailures"]:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in ids:
            return None
        failed.add(ident)
    return failed


def scheduled_event(rule_name: str, now: float | None = None, region: str = REGION) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event``."""
    ts = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/yaml",
    "+json",
    "+xml",
)


def is_text(content_type: str) -> bool:
    """API Gateway passes these bodies as text; anything else is base64-encoded."""
    ct = content_type.lower()
    return any(t in ct for t in _TEXT_TYPES)


def http_api_event(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    route_key: str = "$default",
    path_parameters: Mapping[str, str] | None = None,
    api_id: str = "local",
    domain_name: str = "localhost",
    stage: str = "$default",
    now: float | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event for one HTTP request."""
    now = time.time() if now is None else now
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    ts = datetime.fromtimestamp(now, UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": domain_name,
            "domainPrefix": domain_name.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": base64.b32encode(uuid.uuid4().bytes)[:16].decode().rstrip("="),
            "routeKey": route_key,
            "stage": stage,
            "time": ts.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        if is_text(merged.get("content-type", "")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event
