"""Shared setup for the service unit tests: moto's in-process ``mock_aws`` with the buckets,
table and queues of the architecture, and a :class:`Backend` wired to them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto import mock_aws

from imagepipe.service.aws import Clients
from imagepipe.service.backend import Backend
from imagepipe.service.config import Config

API_KEY = "test-key-0123456789"
REGION = "us-east-1"
HASH = "00112233445566ff"


def make_config(**overrides: Any) -> Config:
    base = dict(
        region=REGION,
        source_bucket="ip-source",
        dest_bucket="ip-dest",
        table="ip-table",
        queue_url="",
        dlq_url="",
        api_key=API_KEY,
        max_upload_bytes=1_000_000,
        presign_expires=900,
        max_receive_count=3,
    )
    base.update(overrides)
    return Config(**base)


def env_for(config: Config) -> dict[str, str]:
    return {
        "AWS_DEFAULT_REGION": config.region,
        "AWS_REGION": config.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "IMAGEPIPE_SOURCE_BUCKET": config.source_bucket,
        "IMAGEPIPE_DEST_BUCKET": config.dest_bucket,
        "IMAGEPIPE_TABLE": config.table,
        "IMAGEPIPE_QUEUE_URL": config.queue_url,
        "IMAGEPIPE_DLQ_URL": config.dlq_url,
        "IMAGEPIPE_API_KEY": config.api_key,
        "IMAGEPIPE_MAX_UPLOAD_BYTES": str(config.max_upload_bytes),
        "IMAGEPIPE_MAX_RECEIVE_COUNT": str(config.max_receive_count),
    }


def provision(config: Config) -> Config:
    """Create the resources inside an active mock; returns the config with queue URLs."""
    s3 = boto3.client("s3", region_name=config.region)
    s3.create_bucket(Bucket=config.source_bucket)
    s3.create_bucket(Bucket=config.dest_bucket)
    ddb = boto3.client("dynamodb", region_name=config.region)
    ddb.create_table(
        TableName=config.table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "gsi1",
            "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                          {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
    )
    sqs = boto3.client("sqs", region_name=config.region)
    dlq = sqs.create_queue(QueueName="ip-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="ip-queue")["QueueUrl"]
    return Config(**{**config.__dict__, "queue_url": queue, "dlq_url": dlq})


@contextmanager
def mocked_backend(**overrides: Any) -> Iterator[Backend]:
    """A Backend on moto's in-process mock, with fake credentials in the environment."""
    saved = dict(os.environ)
    os.environ.update(env_for(make_config(**overrides)))
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            config = provision(make_config(**overrides))
            os.environ.update(env_for(config))
            yield Backend.create(config, Clients.create(config))
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class FakeResult:
    data: bytes
    facts: dict[str, Any]


@dataclass
class FakeEngine:
    """Returns fixed bytes and facts, or raises what it is told to; counts calls."""

    error: Exception | None = None
    calls: list[int] = field(default_factory=list)

    def __call__(self, data: bytes, recipe: Any, limits: Any) -> FakeResult:
        self.calls.append(len(data))
        if self.error is not None:
            raise self.error
        return FakeResult(b"OUTPUT", {
            "input": {"format": "PNG", "width": 4, "height": 4, "bytes": len(data)},
            "output": {"format": "WEBP", "width": 2, "height": 2, "bytes": 6, "content_type": "image/webp",
                       "extension": "webp"},
            "compression_ratio": len(data) / 6, "bits_per_pixel": 12.0,
            "metrics": {"ssim": 0.97, "psnr": float("inf")},
            "timings_ms": {"decode": 1.0, "encode": 2.0, "total": 3.0},
            "recipe_hash": HASH,
        })
