"""Tiny Lambda handlers that exercise the local runtime's failure modes (used by its tests).

Imported by dotted path in worker processes, exactly like the real handlers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

INIT_PID = os.getpid()  # module import = the worker's init phase
time.sleep(float(os.environ.get("SELFTEST_INIT_SLEEP_S", "0")))  # a slow cold start, on request


def echo(event: Any, context: Any) -> dict[str, Any]:
    """Return what the function saw: event, context and selected environment."""
    return {
        "event": event,
        "pid": os.getpid(),
        "init_pid": INIT_PID,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "SELFTEST_VALUE", "AWS_PROFILE")},
    }


def crash(event: Any, context: Any) -> None:
    """Die without a word, like a segfault in a C extension."""
    os._exit(3)


def sleep(event: Any, context: Any) -> str:
    """Sleep ``event["seconds"]`` (default 60)."""
    time.sleep(float(event.get("seconds", 60)))
    return "slept"


def hog(event: Any, context: Any) -> int:
    """Touch ``event["mb"]`` MiB of memory (default 2048) in 32 MiB blocks."""
    blocks = []
    for _ in range(int(event.get("mb", 2048)) // 32):
        blocks.append(b"\x01" * (32 << 20))
    return len(blocks)


def fail(event: Any, context: Any) -> None:
    """Raise an ordinary exception (a function error)."""
    raise ValueError("boom")


def sqs_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS handler: records whose body has ``"fail": true`` are reported as failures.

    A body ``{"crash": true}`` kills the worker. Every delivery is appended to the file
    named by ``SELFTEST_LOG`` (``messageId``, body, ``ApproximateReceiveCount``).
    """
    failures = []
    log = os.environ.get("SELFTEST_LOG")
    for record in event["Records"]:
        body = json.loads(record["body"])
        if log:
            with Path(log).open("a", encoding="utf-8") as fh:
                fh.write(
                    json.dumps(
                        {
                            "id": record["messageId"],
                            "body": body,
                            "count": record["attributes"]["ApproximateReceiveCount"],
                        }
                    )
                    + "\n"
                )
        if body.get("crash"):
            os._exit(9)
        if body.get("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
