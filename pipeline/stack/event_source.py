"""The SQS -> Lambda event source mapping, and the scheduled trigger, for the local runtime.

Pollers (one per worker slot) long-poll the queue, invoke the function with the AWS SQS
event, delete the records that succeeded (honouring ``batchItemFailures`` when the
mapping has ReportBatchItemFailures) and leave the others for the visibility timeout, so
SQS redelivers them and, after ``maxReceiveCount`` receives, moves them to the DLQ.
A failed invocation (handler error, crash, timeout, out of memory) fails the whole batch.

Local deviation, documented: while an invocation runs, the poller extends the visibility
of its messages (heartbeat), so a short test visibility timeout never redelivers a
message that is still being processed. On AWS the same is achieved by the rule
"visibility timeout >= 6 x function timeout" that the template follows.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.stack.events import batch_item_failures, scheduled_event, sqs_event
from pipeline.stack.runtime import InvocationResult, LambdaRuntime

log = logging.getLogger("imagepipe.stack.event_source")


@dataclass
class BatchOutcome:
    """What happened to one batch (kept in a short history for tests and health)."""

    message_ids: list[str]
    deleted: list[str]
    failed: list[str]
    result: InvocationResult
    at: float = field(default_factory=time.time)


class SqsEventSource:
    """Polls one queue and feeds batches to a :class:`LambdaRuntime`."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        sqs_factory: Callable[[], Any],
        queue_url: str,
        queue_arn: str,
        batch_size: int = 10,
        report_batch_item_failures: bool = True,
        visibility_timeout: int = 30,
        pollers: int | None = None,
        wait_seconds: int = 1,
        heartbeat: bool = True,
        history: int = 200,
    ) -> None:
        self.runtime = runtime
        self.sqs_factory = sqs_factory
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = max(1, min(10, batch_size))
        self.rbif = report_batch_item_failures
        self.visibility_timeout = visibility_timeout
        self.pollers = pollers or runtime.size
        self.wait_seconds = wait_seconds
        self.heartbeat = heartbeat
        self.history: collections.deque[BatchOutcome] = collections.deque(maxlen=history)
        self.stats = {"batches": 0, "records": 0, "deleted": 0, "failed": 0, "poll_errors": 0}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats_lock = threading.Lock()

    def start(self) -> SqsEventSource:
        """Start the poller threads."""
        self._stop.clear()
        for i in range(self.pollers):
            t = threading.Thread(target=self._poll_loop, name=f"sqs-poller-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; in-flight invocations finish (or are killed when the runtime stops)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]  # a later stop() reaps them

    # -- polling ---------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        sqs = self.sqs_factory()
        while not self._stop.is_set():
            try:
                resp = sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.batch_size,
                    WaitTimeSeconds=self.wait_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except (BotoCoreError, ClientError) as exc:
                if self._stop.is_set():
                    return
                with self._stats_lock:
                    self.stats["poll_errors"] += 1
                log.warning("receive_message failed: %s", exc)
                self._stop.wait(1.0)
                continue
            messages = resp.get("Messages") or []
            if messages and not self._stop.is_set():
                try:
                    self.process_batch(sqs, messages)
                except RuntimeError:  # the runtime stopped underneath us: messages will be redelivered
                    return

    def process_batch(self, sqs: Any, messages: list[dict[str, Any]]) -> BatchOutcome:
        """Invoke the function with one batch and settle its messages."""
        ids = [m["MessageId"] for m in messages]
        event = sqs_event(messages, self.queue_arn)
        beat = _Heartbeat(sqs, self.queue_url, messages, self.visibility_timeout) if self.heartbeat else None
        if beat:
            beat.start()
        try:
            result = self.runtime.invoke(event)
        finally:
            if beat:
                beat.stop()
        if not result.ok:
            failed_ids: set[str] | None = None
        elif self.rbif:
            failed_ids = batch_item_failures(result.value, ids)
        else:
            failed_ids = set()
        failed = list(ids) if failed_ids is None else [i for i in ids if i in failed_ids]
        failed_set = set(failed)
        done = [m for m in messages if m["MessageId"] not in failed_set]
        deleted = self._delete(sqs, done)
        outcome = BatchOutcome(ids, deleted, failed, result)
        self.history.append(outcome)
        with self._stats_lock:
            self.stats["batches"] += 1
            self.stats["records"] += len(ids)
            self.stats["deleted"] += len(deleted)
            self.stats["failed"] += len(failed)
        if failed:
            log.info(
                "batch %s: %d of %d records failed (%s)",
                result.request_id,
                len(failed),
                len(ids),
                result.reason or "batchItemFailures",
            )
        return outcome

    def _delete(self, sqs: Any, messages: list[dict[str, Any]]) -> list[str]:
        deleted: list[str] = []
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            try:
                resp = sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.warning("delete_message_batch failed (messages will be redelivered): %s", exc)
                continue
            for ok in resp.get("Successful", []):
                deleted.append(chunk[int(ok["Id"])]["MessageId"])
        return deleted


class _Heartbeat:
    """Keeps a batch invisible while its invocation runs."""

    def __init__(
        self, sqs: Any, queue_url: str, messages: list[dict[str, Any]], visibility_timeout: int
    ) -> None:
        self.sqs, self.queue_url, self.messages = sqs, queue_url, messages
        self.vt = max(1, int(visibility_timeout))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqs-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        interval = max(0.5, self.vt / 2)
        while not self._stop.wait(interval):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.vt}
                for i, m in enumerate(self.messages[:10])
            ]
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                log.debug("visibility heartbeat failed: %s", exc)


class ScheduledTrigger:
    """Invokes a function with a scheduled event every ``interval`` seconds."""

    def __init__(self, runtime: LambdaRuntime, rule_name: str, interval: float) -> None:
        self.runtime = runtime
        self.rule_name = rule_name
        self.interval = interval
        self.stats = {"invocations": 0, "failures": 0}
        self.last: InvocationResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ScheduledTrigger:
        """Start the timer thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{self.rule_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the timer (an invocation in flight completes or is killed by the runtime's stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def fire(self) -> InvocationResult:
        """One scheduled invocation, now."""
        result = self.runtime.invoke(scheduled_event(self.rule_name))
        self.last = result
        self.stats["invocations"] += 1
        if not result.ok:
            self.stats["failures"] += 1
            log.warning("scheduled %s failed: %s %s", self.rule_name, result.reason, result.error)
        return result

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.fire()
            except RuntimeError:  # runtime stopped underneath us
                return
