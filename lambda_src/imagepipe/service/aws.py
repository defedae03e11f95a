"""boto3 clients, created once per process with timeouts and standard retries.

``AWS_ENDPOINT_URL`` (the local stack sets it) is honoured by boto3 itself; nothing here
knows whether it talks to AWS or to the emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from imagepipe.service.config import Config, get_config

BOTO_CONFIG = BotoConfig(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
    signature_version="s3v4",
    # presigned URLs on the regional host (bucket.s3.<region>.amazonaws.com): the default global
    # host answers 307 for new buckets outside us-east-1. IP endpoints (the emulator) stay path-style.
    s3={"addressing_style": "virtual"},
)


@dataclass(frozen=True)
class Clients:
    """The AWS clients and the table resource the service uses."""

    s3: Any
    sqs: Any
    dynamodb: Any
    table: Any

    @classmethod
    def create(cls, config: Config) -> Clients:
        """New clients in ``config.region`` (endpoint from ``AWS_ENDPOINT_URL`` when set)."""
        session = boto3.session.Session(region_name=config.region)
        s3 = session.client("s3", config=BOTO_CONFIG)
        sqs = session.client("sqs", config=BOTO_CONFIG)
        dynamodb = session.client("dynamodb", config=BOTO_CONFIG)
        table = session.resource("dynamodb", config=BOTO_CONFIG).Table(config.table) if config.table else None
        return cls(s3=s3, sqs=sqs, dynamodb=dynamodb, table=table)


@lru_cache(maxsize=1)
def get_clients() -> Clients:
    """The process-wide clients (handlers call this at import, i.e. once per Lambda init)."""
    return Clients.create(get_config())
