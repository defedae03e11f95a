"""Processor Lambda: an SQS batch of S3 events and job messages.

Each record is handled on its own; only records that failed are reported back
(``batchItemFailures``) so SQS redelivers just those. Duplicates are no-ops because job ids
are deterministic and job transitions are conditional writes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from imagepipe.core.budget import Budget
from imagepipe.service.aws import get_clients
from imagepipe.service.backend import Backend
from imagepipe.service.budget import TimeBudget
from imagepipe.service.config import get_config
from imagepipe.service.jobs import JobRunner
from imagepipe.service.messages import parse_body

logger = Logger()
CONFIG = get_config()
RUNNER = JobRunner(Backend.create(CONFIG, get_clients()))
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle_record(record: SQSRecord, runner: JobRunner | None = None,
                  budget: TimeBudget | None = None, deadline: Budget | None = None) -> list[str]:
    """Every unit of work in one message; raises (after trying them all) if any failed.

    When the invocation has too little time left for another record (``budget``), the record is
    sent back to the queue as a new message and counted as handled, so a slow batch cannot push
    healthy records into the DLQ by timing out around them. ``deadline`` is the engine's time
    budget (core/budget.py): work adapts to it, is refused, or is stopped at it, typed.
    """
    runner = runner or RUNNER
    if budget is not None and not budget.allows_next():
        runner.backend.enqueue(record.body)
        logger.info("not enough time left in this invocation; record re-queued",
                    extra={"message_id": record.message_id, "longest_ms": round(budget.longest_ms)})
        return ["deferred"]
    if budget is not None:
        return budget.run(lambda: _handle_record(record, runner, deadline))
    return _handle_record(record, runner, deadline)


def _handle_record(record: SQSRecord, runner: JobRunner, deadline: Budget | None = None) -> list[str]:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    final = receive_count >= runner.backend.config.max_receive_count
    try:
        work = parse_body(record.body)
    except Exception:
        logger.exception("unparseable queue message; it will go to the DLQ",
                         extra={"message_id": record.message_id})
        raise
    outcomes: list[str] = []
    first_error: Exception | None = None
    for item in work:
        try:
            kw = {"budget": deadline} if deadline is not None else {}
            outcome = runner.handle(item, final_attempt=final, first_delivery=receive_count == 1, **kw)
            outcomes.append(outcome)
            logger.info("work done", extra={"message_id": record.message_id, "work": repr(item),
                                            "outcome": outcome})
        except Exception as exc:
            logger.warning("work failed; the message will be retried",
                           extra={"message_id": record.message_id, "work": repr(item),
                                  "attempt": receive_count, "final": final, "error": repr(exc)})
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return outcomes


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: ``{"batchItemFailures": [...]}``."""
    budget = TimeBudget.for_context(context)
    return process_partial_response(event=event,
                                    record_handler=partial(handle_record, budget=budget,
                                                           deadline=engine_budget(context)),
                                    processor=processor, context=context)


def engine_budget(context: Any) -> Budget | None:
    """The engine's budget: the time the Lambda context says is left of this invocation and the
    function's memory size (the local runtime's context says the same); None without a context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    memory = getattr(context, "memory_limit_in_mb", None)
    return Budget.from_remaining(float(remaining()), memory_mb=float(memory) if memory else None)
