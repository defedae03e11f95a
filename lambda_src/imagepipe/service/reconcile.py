"""Dead-letter reconciliation: a message in the DLQ means its job will never run again, so
the job is marked ``failed`` with ``retries_exhausted`` (unless it already finished).

Messages stay in the DLQ for operators (redrive or inspection); after reading one we hide it
for ``hold_seconds`` so scheduled runs do not re-read it in a tight loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from imagepipe.errors import RetriesExhausted
from imagepipe.service.backend import Backend
from imagepipe.service.drops import drop_image_id
from imagepipe.service.messages import JobMessage, ObjectCreated, parse_body
from imagepipe.service.records import make_job_id
from imagepipe.service.sweeps import fail_dead_letter

logger = logging.getLogger(__name__)
HOLD_SECONDS = 6 * 3600
MAX_BATCHES = 10


@dataclass
class ReconcileReport:
    """What one reconciler run did."""

    messages: int = 0
    marked_failed: list[str] = field(default_factory=list)
    already_final: list[str] = field(default_factory=list)
    unmapped: int = 0


def jobs_for_message(backend: Backend, body: str) -> list[str]:
    """The job ids a dead-lettered message was about (unparseable bodies: none)."""
    try:
        work = parse_body(body)
    except Exception:
        return []
    out: list[str] = []
    for item in work:
        if isinstance(item, JobMessage):
            out.append(item.job_id)
        elif isinstance(item, ObjectCreated) and item.key.startswith(backend.config.upload_prefix):
            image_id = item.key[len(backend.config.upload_prefix):].split("/", 1)[0]
            image = backend.records.get_image(image_id)
            if image is None or image.get("key") != item.key:  # a bucket drop: its id names the version
                image_id = drop_image_id(item.bucket, item.key, item.version_id or item.etag or "")
                image = backend.records.get_image(image_id)
            if image and image.get("recipe_hash"):
                out.append(make_job_id(image_id, image["recipe_hash"]))
    return out


def reconcile(backend: Backend, hold_seconds: int = HOLD_SECONDS,
              max_batches: int = MAX_BATCHES) -> ReconcileReport:
    """Peek the DLQ and mark every referenced, unfinished job failed."""
    report = ReconcileReport()
    sqs, url = backend.sqs, backend.config.dlq_url
    for _ in range(max_batches):
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                   VisibilityTimeout=60, AttributeNames=["ApproximateReceiveCount"])
        messages = resp.get("Messages", [])
        if not messages:
            break
        for msg in messages:
            report.messages += 1
            job_ids = jobs_for_message(backend, msg.get("Body", ""))
            swept = fail_dead_letter(backend, msg.get("Body", ""))  # the lab's sweep parts
            report.marked_failed.extend(swept)
            if not job_ids and not swept:
                report.unmapped += 1
                logger.warning("dead letter %s maps to no job", msg.get("MessageId"))
            for job_id in job_ids:
                err = RetriesExhausted("processing failed on every attempt; the message is in the "
                                       "dead-letter queue")
                if backend.records.fail_job(job_id, err.code, err.message):
                    report.marked_failed.append(job_id)
                else:
                    report.already_final.append(job_id)
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"],
                                          VisibilityTimeout=hold_seconds)
    return report
