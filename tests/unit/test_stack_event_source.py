"""The SQS event source mapping against the emulator and the local runtime, with self-test handlers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.stack.emulator import Emulator
from pipeline.stack.event_source import ScheduledTrigger, SqsEventSource
from pipeline.stack.provision import clients
from pipeline.stack.runtime import FunctionSpec, LambdaRuntime


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(tmp_path_factory.mktemp("esm")).start()
    yield emu
    emu.stop()


def _sqs(emu: Emulator) -> Any:
    return clients(emu.endpoint_url)["sqs"]


def _queues(emu: Emulator, name: str, max_receive: int) -> tuple[str, str, str]:
    sqs = _sqs(emu)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    q = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return q, arn, dlq


def _deliveries(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _wait(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.1)


def _depth(emu: Emulator, url: str) -> int:
    a = _sqs(emu).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def _source(emu: Emulator, log: Path, q: str, arn: str, **kw: Any) -> tuple[LambdaRuntime, SqsEventSource]:
    spec = FunctionSpec(
        "esm-test", "pipeline.stack._selftest_handlers.sqs_batch", 10, 512, {"SELFTEST_LOG": str(log)}
    )
    rt = LambdaRuntime(spec, workers=1).start()
    src = SqsEventSource(
        rt,
        lambda: _sqs(emu),
        q,
        arn,
        batch_size=10,
        report_batch_item_failures=True,
        visibility_timeout=1,
        pollers=1,
        wait_seconds=1,
        **kw,
    )
    return rt, src


def test_partial_batch_failure_redelivers_only_the_failed_message(emulator, tmp_path):
    q, arn, dlq = _queues(emulator, "esm-partial", max_receive=2)
    sqs = _sqs(emulator)
    sqs.send_message_batch(
        QueueUrl=q,
        Entries=[
            {"Id": "a", "MessageBody": json.dumps({"n": "a"})},
            {"Id": "b", "MessageBody": json.dumps({"n": "b", "fail": True})},
            {"Id": "c", "MessageBody": json.dumps({"n": "c"})},
        ],
    )
    log = tmp_path / "deliveries.jsonl"
    rt, src = _source(emulator, log, q, arn)
    src.start()
    try:
        _wait(lambda: _depth(emulator, dlq) == 1 and _depth(emulator, q) == 0)
    finally:
        src.stop()
        rt.stop()
    by_name: dict[str, list[str]] = {}
    for d in _deliveries(log):
        by_name.setdefault(d["body"]["n"], []).append(d["count"])
    assert by_name["a"] == ["1"] and by_name["c"] == ["1"]  # succeeded once, deleted, never again
    assert by_name["b"] == ["1", "2"]  # retried after the visibility timeout, then dead-lettered
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["n"] for m in dead] == ["b"]
    assert src.stats["deleted"] == 2


def test_event_shape_delivered_to_the_function(emulator, tmp_path):
    q, arn, _dlq = _queues(emulator, "esm-shape", max_receive=3)
    _sqs(emulator).send_message(QueueUrl=q, MessageBody=json.dumps({"n": 1}))
    log = tmp_path / "d.jsonl"
    rt, src = _source(emulator, log, q, arn)
    try:
        msgs = _sqs(emulator).receive_message(
            QueueUrl=q, AttributeNames=["All"], MessageAttributeNames=["All"]
        )
        outcome = src.process_batch(_sqs(emulator), msgs["Messages"])
    finally:
        rt.stop()
    assert outcome.result.ok and outcome.failed == [] and len(outcome.deleted) == 1
    assert _depth(emulator, q) == 0


def test_crash_fails_the_whole_batch_and_the_poison_message_is_dead_lettered(emulator, tmp_path):
    q, arn, dlq = _queues(emulator, "esm-crash", max_receive=2)
    sqs = _sqs(emulator)
    sqs.send_message_batch(
        QueueUrl=q,
        Entries=[
            {"Id": "ok", "MessageBody": json.dumps({"n": "ok"})},
            {"Id": "bad", "MessageBody": json.dumps({"n": "bad", "crash": True})},
        ],
    )
    log = tmp_path / "crash.jsonl"
    rt, src = _source(emulator, log, q, arn, history=50)
    src.start()
    try:
        _wait(lambda: _depth(emulator, q) == 0, timeout=40)
    finally:
        src.stop()
        rt.stop()
    reasons = [o.result.reason for o in src.history]
    assert "worker_crashed" in reasons
    crashed = next(o for o in src.history if o.result.reason == "worker_crashed")
    assert set(crashed.failed) == set(crashed.message_ids)  # the whole batch failed
    dead = [
        json.loads(m["Body"])["n"]
        for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    ]
    assert "bad" in dead
    assert rt.stats["replaced"] >= 1


def test_scheduled_trigger_fires_with_a_scheduled_event():
    spec = FunctionSpec("sched", "pipeline.stack._selftest_handlers.echo", 5, 256)
    with LambdaRuntime(spec, workers=1) as rt:
        trig = ScheduledTrigger(rt, "my-rule", interval=0.2).start()
        try:
            _wait(lambda: trig.stats["invocations"] >= 2, timeout=20)
        finally:
            trig.stop()
    assert trig.last is not None and trig.last.ok
    event = trig.last.value["event"]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"][0].endswith(":rule/my-rule")


def test_a_second_stop_still_waits_for_a_poller_the_first_one_gave_up_on():
    # LocalStack.stop() calls stop(grace), stops the runtime, then stop() again to reap the
    # pollers that were still in an invocation: the second call must still know about them
    import threading

    from pipeline.stack.runtime import InvocationResult

    started, release = threading.Event(), threading.Event()

    class _Runtime:
        size = 1

        def invoke(self, event: Any) -> InvocationResult:
            started.set()
            release.wait(10)
            return InvocationResult("req", True, value=None)

    class _Sqs:
        def receive_message(self, **_kw: Any) -> dict[str, Any]:
            return {"Messages": [{"MessageId": "m1", "ReceiptHandle": "h1", "Body": "{}"}]}

        def delete_message_batch(self, **_kw: Any) -> dict[str, Any]:
            time.sleep(0.5)  # the poller is still settling its batch
            return {"Successful": [{"Id": "0"}]}

    src = SqsEventSource(_Runtime(), _Sqs, "url", "arn", pollers=1, heartbeat=False)  # type: ignore[arg-type]
    src.start()
    threads = list(src._threads)
    assert started.wait(10)
    src.stop(timeout=0.1)
    assert threads[0].is_alive()
    release.set()
    src.stop(timeout=5)
    assert not threads[0].is_alive()
