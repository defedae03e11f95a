"""Classify an emulator request: which service, which action, and how to persist it."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs


class Kind(enum.Enum):
    """How the journal treats a request."""

    READ = "read"  # no state change: pass through, no lock, nothing written
    REPLAY = "replay"  # state change: serialized, the request itself is journaled and replayed
    LEDGER = "ledger"  # SQS message change: serialized, persisted by the SQS ledger entries only
    UNLOCKED = "unlocked"  # long-polling SQS calls: not serialized; ledger entries written at once


DYNAMODB_READS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "DescribeTable",
        "ListTables",
        "DescribeTimeToLive",
        "DescribeContinuousBackups",
        "ListTagsOfResource",
        "DescribeEndpoints",
        "DescribeLimits",
        "ListBackups",
        "ListGlobalTables",
        "DescribeKinesisStreamingDestination",
    }
)

SQS_READS = frozenset(
    {
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListQueues",
        "ListQueueTags",
        "ListDeadLetterSourceQueues",
        "ListMessageMoveTasks",
    }
)
# ReceiveMessage may move messages to the DLQ (ledger entries); visibility changes are not persisted.
SQS_UNLOCKED = frozenset({"ReceiveMessage", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch"})
SQS_LEDGER = frozenset(
    {"SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch", "PurgeQueue"}
)


def service_of(environ: Mapping[str, Any]) -> str:
    """The AWS service a request is for, as moto's dispatcher would infer it."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth.startswith("AWS4-HMAC-SHA256"):
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
            return scope.split("/")[3].lower()
        except IndexError:
            return "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs"
    query = parse_qs(environ.get("QUERY_STRING", ""))
    cred = (query.get("X-Amz-Credential") or [""])[0]
    if cred.count("/") >= 4:
        return cred.split("/")[3].lower()
    return "s3"


def action_of(environ: Mapping[str, Any], body: bytes) -> str:
    """The API action for JSON/query protocols (``X-Amz-Target`` or ``Action=``); ``""`` if none."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if "." in target:
        return target.rsplit(".", 1)[1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    ctype = environ.get("CONTENT_TYPE", "")
    if "x-www-form-urlencoded" in ctype and body:
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    if "json" in ctype and body:
        try:
            data = json.loads(body)
        except ValueError:
            return ""
        if isinstance(data, dict) and isinstance(data.get("Action"), str):
            return data["Action"]
    return ""


def classify(environ: Mapping[str, Any], body: bytes) -> tuple[Kind, str, str]:
    """Return ``(kind, service, action)`` for a request whose body has been read."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "")
    if path.startswith("/moto-api"):
        return Kind.READ, "moto-api", path
    service = service_of(environ)
    if service == "s3":
        kind = Kind.READ if method in ("GET", "HEAD", "OPTIONS") else Kind.REPLAY
        return kind, service, method
    if method in ("GET", "HEAD", "OPTIONS") and service in ("dynamodb", "sqs"):
        # these services only take POSTs; anything else changes nothing
        return Kind.READ, service, method
    action = action_of(environ, body)
    if service == "dynamodb":
        return (Kind.READ if action in DYNAMODB_READS else Kind.REPLAY), service, action
    if service == "sqs":
        if action in SQS_READS:
            return Kind.READ, service, action
        if action in SQS_UNLOCKED:
            return Kind.UNLOCKED, service, action
        if action in SQS_LEDGER:
            return Kind.LEDGER, service, action
        return Kind.REPLAY, service, action
    if method in ("GET", "HEAD", "OPTIONS"):
        return Kind.READ, service, action
    return Kind.REPLAY, service, action  # unknown: be conservative and keep it
