"""The service's dependencies in one object, built once per Lambda init by a handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagepipe.service.aws import Clients
from imagepipe.service.awserrors import translate_aws_errors
from imagepipe.service.config import Config
from imagepipe.service.presets import Catalog, get_catalog
from imagepipe.service.records import Records
from imagepipe.service.storage import Storage


@dataclass(frozen=True)
class Backend:
    """Config, storage, records, the queue client and the presets/drop rules catalog."""

    config: Config
    storage: Storage
    records: Records
    sqs: Any
    clients: Clients
    catalog: Catalog = field(default_factory=get_catalog)

    @classmethod
    def create(cls, config: Config, clients: Clients, catalog: Catalog | None = None) -> Backend:
        """Wire the service objects to ``clients`` (``catalog``: default from the environment)."""
        return cls(
            config=config,
            storage=Storage(clients.s3, config),
            records=Records(clients.table),
            sqs=clients.sqs,
            clients=clients,
            catalog=catalog or get_catalog(),
        )

    @translate_aws_errors
    def enqueue(self, body: str) -> str:
        """Send one message to the processing queue; returns its message id."""
        return self.sqs.send_message(QueueUrl=self.config.queue_url, MessageBody=body)["MessageId"]

    @translate_aws_errors
    def enqueue_many(self, bodies: list[str]) -> int:
        """Send messages to the processing queue, ten per request (SQS's batch limit); returns
        how many SQS refused (the caller decides whether that is retryable)."""
        refused = 0
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + 10])]
            resp = self.sqs.send_message_batch(QueueUrl=self.config.queue_url, Entries=entries)
            refused += len(resp.get("Failed") or [])
        return refused
