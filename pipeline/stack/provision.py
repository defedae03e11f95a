"""Create the stack's buckets, table, queues and S3 -> SQS notification in the emulator.

Idempotent: after a journal replay everything already exists and nothing is re-created;
attributes that differ (e.g. a new visibility timeout) are updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from pipeline.stack.resources import ACCOUNT_ID, REGION, StackDefinition

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class Provisioned:
    """Names and URLs of what was provisioned."""

    source_bucket: str
    dest_bucket: str
    table: str
    queue_url: str
    dlq_url: str
    queue_arn: str
    dlq_arn: str


def clients(endpoint_url: str) -> dict[str, Any]:
    """boto3 clients for the emulator."""
    cfg = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=30)
    kw = dict(endpoint_url=endpoint_url, region_name=REGION, config=cfg, **LOCAL_CREDENTIALS)
    return {name: boto3.client(name, **kw) for name in ("s3", "sqs", "dynamodb")}  # type: ignore[call-overload]


def _ensure_bucket(s3: Any, name: str, cors: list[dict[str, Any]]) -> None:
    try:
        s3.head_bucket(Bucket=name)
    except ClientError:
        s3.create_bucket(Bucket=name)
    if cors:
        try:
            current = s3.get_bucket_cors(Bucket=name).get("CORSRules", [])
        except ClientError:
            current = []
        if _norm(current) != _norm(cors):
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": cors})


def _norm(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("AllowedOrigins", "AllowedMethods", "AllowedHeaders", "MaxAgeSeconds")
    out = []
    for r in rules:
        out.append({k: (sorted(r[k]) if isinstance(r.get(k), list) else r.get(k)) for k in keys})
    return out


def _ensure_table(ddb: Any, spec: dict[str, Any]) -> None:
    try:
        ddb.describe_table(TableName=spec["TableName"])
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    ddb.create_table(**spec)


def _ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    changed = {k: v for k, v in attributes.items() if not _same_attr(k, current.get(k), v)}
    if changed:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=changed)
    return url, current["QueueArn"]


def _same_attr(key: str, have: str | None, want: str) -> bool:
    if have is None:
        return False
    if key == "RedrivePolicy":
        import json

        a, b = json.loads(have), json.loads(want)
        return a.get("deadLetterTargetArn") == b.get("deadLetterTargetArn") and str(
            a.get("maxReceiveCount")
        ) == str(b.get("maxReceiveCount"))
    return str(have) == str(want)


def _ensure_notification(s3: Any, bucket: str, queue_arn: str, events: list[str], prefix: str) -> None:
    want = {
        "QueueConfigurations": [
            {
                "Id": "imagepipe-uploads",
                "QueueArn": queue_arn,
                "Events": events,
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            }
        ]
    }
    have = s3.get_bucket_notification_configuration(Bucket=bucket)
    confs = have.get("QueueConfigurations") or []
    if (
        len(confs) == 1
        and confs[0].get("QueueArn") == queue_arn
        and sorted(confs[0].get("Events", [])) == sorted(events)
        and [
            (r.get("Name", "").lower(), r.get("Value"))
            for r in confs[0].get("Filter", {}).get("Key", {}).get("FilterRules", [])
        ]
        == [("prefix", prefix)]
    ):
        return
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=want)


def expected_resources(endpoint_url: str, definition: StackDefinition) -> Provisioned:
    """What :func:`provision` will return (moto's names and URLs are deterministic)."""
    q, dlq = definition.queues["ProcessingQueue"]["name"], definition.queues["ProcessingDLQ"]["name"]
    return Provisioned(
        source_bucket=definition.buckets["SourceBucket"]["name"],
        dest_bucket=definition.buckets["DestinationBucket"]["name"],
        table=definition.table["TableName"],
        queue_url=f"{endpoint_url}/{ACCOUNT_ID}/{q}",
        dlq_url=f"{endpoint_url}/{ACCOUNT_ID}/{dlq}",
        queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{q}",
        dlq_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{dlq}",
    )


def provision(endpoint_url: str, definition: StackDefinition) -> Provisioned:
    """Make the emulator hold every resource of ``definition``; return their names/URLs."""
    c = clients(endpoint_url)
    for spec in definition.buckets.values():
        _ensure_bucket(c["s3"], spec["name"], spec["cors"])
    _ensure_table(c["dynamodb"], definition.table)
    dlq = definition.queues["ProcessingDLQ"]
    dlq_url, dlq_arn = _ensure_queue(c["sqs"], dlq["name"], dlq["attributes"])
    q = definition.queues["ProcessingQueue"]
    queue_url, queue_arn = _ensure_queue(c["sqs"], q["name"], q["attributes"])
    n = definition.notification
    _ensure_notification(c["s3"], n["bucket"], queue_arn, n["events"], n["prefix"])
    return Provisioned(
        source_bucket=definition.buckets["SourceBucket"]["name"],
        dest_bucket=definition.buckets["DestinationBucket"]["name"],
        table=definition.table["TableName"],
        queue_url=queue_url,
        dlq_url=dlq_url,
        queue_arn=queue_arn,
        dlq_arn=dlq_arn,
    )
