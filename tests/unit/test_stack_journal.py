"""The emulator's journal: framing, torn tails, request classification, replay after stop and SIGKILL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.stack.classify import Kind, classify
from pipeline.stack.emulator import Emulator
from pipeline.stack.journal import JOURNAL_NAME, Journal, Record, decode_stream, encode


# -- file format -------------------------------------------------------------------------------
def test_records_round_trip_with_binary_bodies(tmp_path):
    j = Journal(tmp_path)
    assert j.open() == []
    j.append([Record({"t": "http", "n": 1, "raw": b"\x00\xff"}, b"\x00body\xff")])
    j.append([Record({"t": "sqs_add", "id": "m"}), Record({"t": "sqs_del", "id": "m"})])
    j.close()
    again = Journal(tmp_path)
    recs = again.open()
    assert [r.header["t"] for r in recs] == ["http", "sqs_add", "sqs_del"]
    assert recs[0].body == b"\x00body\xff" and recs[0].header["raw"] == b"\x00\xff"
    assert again.torn_bytes == 0
    again.close()


def test_torn_last_record_is_dropped_and_the_file_truncated(tmp_path):
    j = Journal(tmp_path)
    j.open()
    j.append([Record({"n": 1}, b"a" * 100)])
    j.append([Record({"n": 2}, b"b" * 100)])
    j.close()
    path = tmp_path / JOURNAL_NAME
    full = path.read_bytes()
    path.write_bytes(full[:-37])  # a crash in the middle of the second write
    j2 = Journal(tmp_path)
    recs = j2.open()
    assert [r.header["n"] for r in recs] == [1]
    assert j2.torn_bytes > 0
    j2.append([Record({"n": 3})])  # new records follow the last intact one, not the garbage
    j2.close()
    assert [r.header["n"] for r in decode_stream(path.read_bytes())[0]] == [1, 3]


def test_the_journal_does_not_keep_the_records_it_read_back(tmp_path):
    # they hold every object ever uploaded: after the replay the emulator must be able to drop them
    import gc
    import weakref

    j = Journal(tmp_path)
    j.open()
    j.append([Record({"n": 1}, b"a" * 100)])
    j.close()
    again = Journal(tmp_path)
    recs = again.open()
    ref = weakref.ref(recs[0])
    del recs
    gc.collect()
    assert ref() is None
    again.close()


def test_corrupt_record_stops_the_read(tmp_path):
    a, b = encode(Record({"n": 1})), encode(Record({"n": 2}))
    damaged = a + b[:-1] + bytes([b[-1] ^ 0xFF])
    recs, good = decode_stream(damaged)
    assert [r.header["n"] for r in recs] == [1] and good == len(a)


# -- classification -----------------------------------------------------------------------------
def _env(
    method: str, path: str = "/", service: str | None = None, target: str | None = None, query: str = ""
) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    if service:
        env["HTTP_AUTHORIZATION"] = (
            f"AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/"
            "aws4_request, SignedHeaders=host, Signature=x"
        )
    if target:
        env["HTTP_X_AMZ_TARGET"] = target
    return env


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        (_env("GET", "/b/k", "s3"), Kind.READ),
        (_env("HEAD", "/b/k", "s3"), Kind.READ),
        (_env("PUT", "/b/k", "s3"), Kind.REPLAY),
        (_env("DELETE", "/b/k", "s3"), Kind.REPLAY),
        (_env("POST", "/b", None), Kind.REPLAY),  # browser-form upload (no Authorization)
        (_env("POST", "/", "dynamodb", "DynamoDB_20120810.GetItem"), Kind.READ),
        (_env("POST", "/", "dynamodb", "DynamoDB_20120810.Query"), Kind.READ),
        (_env("POST", "/", "dynamodb", "DynamoDB_20120810.PutItem"), Kind.REPLAY),
        (_env("POST", "/", "dynamodb", "DynamoDB_20120810.TransactWriteItems"), Kind.REPLAY),
        (_env("POST", "/", "sqs", "AmazonSQS.ReceiveMessage"), Kind.UNLOCKED),
        (_env("POST", "/", "sqs", "AmazonSQS.GetQueueAttributes"), Kind.READ),
        (_env("POST", "/", "sqs", "AmazonSQS.SendMessage"), Kind.LEDGER),
        (_env("POST", "/", "sqs", "AmazonSQS.DeleteMessageBatch"), Kind.LEDGER),
        (_env("POST", "/", "sqs", "AmazonSQS.CreateQueue"), Kind.REPLAY),
        (_env("POST", "/", "sqs", query="Action=SetQueueAttributes"), Kind.REPLAY),
    ],
)
def test_classification(env, kind):
    assert classify(env, b"")[0] is kind


def test_query_protocol_action_in_body():
    env = _env("POST", "/", "sqs")
    env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    assert classify(env, b"Action=SendMessage&MessageBody=x")[0] is Kind.LEDGER


# -- replay through the emulator ---------------------------------------------------------------
def _clients(emu: Emulator) -> dict[str, Any]:
    kw = dict(
        endpoint_url=emu.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return {n: boto3.client(n, **kw) for n in ("s3", "sqs", "dynamodb")}


def _populate(emu: Emulator) -> dict[str, Any]:
    c = _clients(emu)
    c["s3"].create_bucket(Bucket="journal-src")
    dlq = c["sqs"].create_queue(QueueName="jq-dlq")["QueueUrl"]
    dlq_arn = c["sqs"].get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    q = c["sqs"].create_queue(
        QueueName="jq",
        Attributes={
            "VisibilityTimeout": "0",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"}),
        },
    )["QueueUrl"]
    arn = c["sqs"].get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    c["s3"].put_bucket_notification_configuration(
        Bucket="journal-src",
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    c["dynamodb"].create_table(
        TableName="jt",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    # drain the s3:TestEvent so only our messages remain
    for m in c["sqs"].receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", []):
        c["sqs"].delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
    for i in range(3):
        c["s3"].put_object(
            Bucket="journal-src", Key=f"uploads/{i}.bin", Body=bytes([i]) * 1000
        )  # -> 3 S3 events
    c["s3"].put_object(Bucket="journal-src", Key="other/x.bin", Body=b"no event")
    c["s3"].delete_object(Bucket="journal-src", Key="uploads/2.bin")
    c["dynamodb"].put_item(TableName="jt", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    c["dynamodb"].update_item(
        TableName="jt",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET v = v + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    c["dynamodb"].put_item(TableName="jt", Item={"pk": {"S": "gone"}})
    c["dynamodb"].delete_item(TableName="jt", Key={"pk": {"S": "gone"}})
    c["sqs"].send_message(
        QueueUrl=q,
        MessageBody="job-1",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "job"}},
    )
    # receive everything once; delete one S3 event; the rest stay (receive count 1)
    got = c["sqs"].receive_message(QueueUrl=q, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 4
    deleted = next(m for m in got if "0.bin" in m["Body"])
    c["sqs"].delete_message(QueueUrl=q, ReceiptHandle=deleted["ReceiptHandle"])
    # the next receive redrives the rest (count >= maxReceiveCount 1) to the DLQ; then send one fresh message
    assert c["sqs"].receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", []) == []
    c["sqs"].send_message(QueueUrl=q, MessageBody="job-2")
    return {
        "deleted_id": deleted["MessageId"],
        "dlq_ids": sorted(m["MessageId"] for m in got if m["MessageId"] != deleted["MessageId"]),
    }


def _check(emu: Emulator, facts: dict[str, Any]) -> None:
    c = _clients(emu)
    keys = sorted(o["Key"] for o in c["s3"].list_objects_v2(Bucket="journal-src")["Contents"])
    assert keys == ["other/x.bin", "uploads/0.bin", "uploads/1.bin"]
    assert c["s3"].get_object(Bucket="journal-src", Key="uploads/1.bin")["Body"].read() == b"\x01" * 1000
    assert c["dynamodb"].get_item(TableName="jt", Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "2"}
    assert "Item" not in c["dynamodb"].get_item(TableName="jt", Key={"pk": {"S": "gone"}})
    q = c["sqs"].get_queue_url(QueueName="jq")["QueueUrl"]
    dlq = c["sqs"].get_queue_url(QueueName="jq-dlq")["QueueUrl"]
    main = c["sqs"].receive_message(QueueUrl=q, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert [m["Body"] for m in main] == ["job-2"]
    dead = c["sqs"].receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=30
    )["Messages"]
    assert sorted(m["MessageId"] for m in dead) == facts["dlq_ids"]  # same ids as before the restart
    job1 = next(m for m in dead if m["Body"] == "job-1")
    assert job1["MessageAttributes"]["kind"]["StringValue"] == "job"
    assert facts["deleted_id"] not in {m["MessageId"] for m in main + dead}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "emu"


def test_state_survives_a_clean_restart(data_dir):
    emu = Emulator(data_dir).start()
    try:
        facts = _populate(emu)
    finally:
        emu.stop()
    emu = Emulator(data_dir).start()
    try:
        assert emu.replay_counts["http_failed"] == 0
        _check(emu, facts)
    finally:
        emu.stop()


def test_state_survives_sigkill_and_a_torn_tail(data_dir):
    emu = Emulator(data_dir, compact=False).start()
    facts = _populate(emu)
    emu.kill()  # no shutdown path at all
    with open(data_dir / JOURNAL_NAME, "ab") as fh:
        fh.write(b"IPJ1\x00\x00\x10\x00half a record")  # what a crash mid-write leaves behind
    emu = Emulator(data_dir).start()
    try:
        assert emu.replay_counts["torn_bytes"] > 0
        assert emu.replay_counts["http_failed"] == 0
        _check(emu, facts)
    finally:
        emu.stop()
    emu = Emulator(data_dir).start()  # and again after compaction on the clean stop
    try:
        assert emu.replay_counts["torn_bytes"] == 0
        _check(emu, facts)
    finally:
        emu.stop()


def test_moto_reset_is_refused(data_dir):
    import httpx

    with_emu = Emulator(data_dir).start()
    try:
        r = httpx.post(with_emu.endpoint_url + "/moto-api/reset")
        assert r.status_code == 403
    finally:
        with_emu.stop()


def test_a_data_dir_serves_one_emulator_at_a_time(data_dir):
    from pipeline.stack.emulator import EmulatorError

    first = Emulator(data_dir).start()
    try:
        with pytest.raises(EmulatorError, match="in use"):
            Emulator(data_dir).start()
    finally:
        first.kill()  # the kernel releases the lock even on SIGKILL
    again = Emulator(data_dir).start()
    again.stop()


def test_full_compaction_is_verified_and_keeps_the_state(data_dir, monkeypatch):
    from pipeline.stack.compaction import _is_ddb_item_write
    from pipeline.stack.journal import iter_file

    monkeypatch.setenv("IMAGEPIPE_COMPACT_MIN_RECORDS", "1")
    emu = Emulator(data_dir).start()
    try:
        facts = _populate(emu)
    finally:
        emu.stop()  # clean stop: compact, verify in a fresh process, replace
    records = list(iter_file(data_dir / JOURNAL_NAME))
    synthetic = [r for r in records if r.header.get("compacted")]
    item_writes = [r for r in records if r.header.get("t") == "http" and _is_ddb_item_write(r)]
    assert len(synthetic) == 1 == len(item_writes)  # put+update+put+delete folded into the one live item
    emu = Emulator(data_dir).start()
    try:
        assert emu.replay_counts["http_failed"] == 0
        _check(emu, facts)
    finally:
        emu.stop()
