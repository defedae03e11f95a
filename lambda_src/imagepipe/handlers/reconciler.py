"""Reconciler Lambda (scheduled): marks jobs whose messages were dead-lettered as failed, and
seals the rollups (folds their live items into one item per day)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger

from imagepipe.service import rollups
from imagepipe.service.aws import get_clients
from imagepipe.service.backend import Backend
from imagepipe.service.config import get_config
from imagepipe.service.reconcile import reconcile

logger = Logger()
BACKEND = Backend.create(get_config(), get_clients())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge scheduled event; its content is not used)."""
    report = asdict(reconcile(BACKEND))
    report["rollups_sealed"] = rollups.seal(BACKEND.records.table)  # History's day items (service/rollups.py)
    logger.info("reconciled the DLQ, sealed the rollups", extra=report)
    return report
