"""SQS message persistence at the message level (hooks into moto's in-process SQS models).

Replaying SQS *requests* cannot restore a queue: message ids and receipt handles are
random, S3 notifications enqueue messages without any HTTP request, and moto moves
messages to the DLQ inside ``ReceiveMessage``. So the emulator records what happened to
each message instead:

- ``sqs_add``   a message now lives in a queue (send, send-batch, S3 notification, or a
                redrive to the DLQ, which re-adds the same message id to the DLQ);
- ``sqs_del``   a message was deleted (by receipt handle, mapped to its id);
- ``sqs_purge`` a queue was purged.

After a restart the live messages (added, not deleted) are put back into their queues in
their original order with their original ids and bodies. Receive counts and visibility
are not restored: every message that was not deleted is visible again at once, i.e.
in-flight messages are redelivered (processing is idempotent).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

Sink = Callable[[dict[str, Any]], None]

_sink: Sink | None = None
_installed = False


def set_sink(sink: Sink | None) -> None:
    """Where ledger entries go (``None`` = nowhere, e.g. during replay)."""
    global _sink
    _sink = sink


def _emit(entry: dict[str, Any]) -> None:
    sink = _sink
    if sink is not None:
        sink(entry)


def _qref(queue: Any) -> dict[str, str]:
    return {"acct": queue.account_id, "region": queue.region, "queue": queue.name}


def install() -> None:
    """Patch moto's SQS models once per process so every message change is emitted."""
    global _installed
    if _installed:
        return
    from moto.sqs.models import Queue, SQSBackend

    orig_add = Queue.add_message
    orig_delete = Queue.delete_message
    orig_purge = SQSBackend.purge_queue

    def add_message(self: Any, message: Any) -> None:
        orig_add(self, message)
        if _sink is not None and any(m is message for m in self._messages):
            _emit(
                {
                    "t": "sqs_add",
                    **_qref(self),
                    "id": message.id,
                    "body": message.body,
                    "mattrs": message.message_attributes,
                    "sys": message.system_attributes,
                    "group": message.group_id,
                    "dedup": message.deduplication_id,
                    "sent": message.sent_timestamp,
                }
            )

    def delete_message(self: Any, receipt_handle: str) -> None:
        ids = [m.id for m in self._messages if m.had_receipt_handle(receipt_handle)]
        orig_delete(self, receipt_handle)
        for mid in ids:
            _emit({"t": "sqs_del", **_qref(self), "id": mid})

    def purge_queue(self: Any, queue_name: str) -> None:
        queue = self.get_queue(queue_name)
        orig_purge(self, queue_name)
        _emit({"t": "sqs_purge", **_qref(queue)})

    Queue.add_message = add_message  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.purge_queue = purge_queue  # type: ignore[method-assign]
    _installed = True


def is_ledger_entry(header: dict[str, Any]) -> bool:
    """True for the entries this module writes."""
    return str(header.get("t", "")).startswith("sqs_")


class Ledger:
    """Folds ledger entries into the set of live messages, then restores them into moto."""

    def __init__(self) -> None:
        self.live: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def feed(self, entry: dict[str, Any]) -> None:
        """Apply one entry to the live set."""
        kind = entry.get("t")
        if kind == "sqs_add":
            self.live.pop(entry["id"], None)  # a redrive moves the same id to the DLQ
            self.live[entry["id"]] = entry
        elif kind == "sqs_del":
            self.live.pop(entry["id"], None)
        elif kind == "sqs_purge":
            ref = (entry["acct"], entry["region"], entry["queue"])
            for mid in [m for m, e in self.live.items() if (e["acct"], e["region"], e["queue"]) == ref]:
                del self.live[mid]

    def entries(self) -> list[dict[str, Any]]:
        """The live messages as ``sqs_add`` entries, in order (for compaction)."""
        return list(self.live.values())

    def restore(self) -> dict[str, int]:
        """Empty every moto queue, then put the live messages back. Returns counts."""
        from moto.sqs.models import Message, sqs_backends

        for _acct, regions in list(sqs_backends.items()):
            for _region, backend in list(regions.items()):
                for queue in backend.queues.values():
                    with queue._messages_lock:
                        queue._messages = []
                        queue._pending_messages = set()
        restored = dropped = 0
        for entry in self.live.values():
            backend = sqs_backends[entry["acct"]][entry["region"]]
            queue = backend.queues.get(entry["queue"])
            if queue is None:
                dropped += 1
                continue
            msg = Message(entry["id"], entry["body"], entry.get("sys") or {})
            msg.message_attributes = entry.get("mattrs") or {}
            msg.group_id = entry.get("group")
            msg.deduplication_id = entry.get("dedup")
            msg.mark_sent()
            if entry.get("sent"):
                msg.sent_timestamp = entry["sent"]
            with queue._messages_lock:
                queue._messages.append(msg)
                queue._messages_lock.notify_all()
            restored += 1
        return {"restored": restored, "dropped": dropped}
