"""Resource definitions read from template.yaml, and idempotent provisioning into the emulator."""

from __future__ import annotations

import json

from pipeline.stack.emulator import Emulator
from pipeline.stack.provision import clients, expected_resources, provision
from pipeline.stack.resources import LOCAL_NAMES, load_template, read_definition


def test_definition_comes_from_the_template():
    template = load_template()
    d = read_definition(template)
    params = template["Parameters"]
    assert d.params["MaxUploadBytes"] == params["MaxUploadBytes"]["Default"]
    assert d.table["TableName"] == "imagepipe-metadata"
    assert [k["AttributeName"] for k in d.table["KeySchema"]] == ["pk", "sk"]
    assert d.table["GlobalSecondaryIndexes"][0]["IndexName"] == "gsi1"
    attrs = d.queues["ProcessingQueue"]["attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == str(params["MaxReceiveCount"]["Default"])
    assert redrive["deadLetterTargetArn"].endswith(":imagepipe-processing-dlq")
    assert d.notification["prefix"] == "uploads/" and d.notification["bucket"] == "imagepipe-source"
    proc = d.functions["ProcessorFunction"]
    assert proc.handler == "imagepipe.handlers.processor.handler"
    assert proc.report_batch_item_failures and proc.timeout == params["ProcessorTimeout"]["Default"]
    assert d.functions["ReconcilerFunction"].schedule


def test_overrides_resolve_through_refs_and_mappings():
    d = read_definition(overrides={"ProcessorTimeout": 30, "MaxReceiveCount": 5, "ProcessorMemorySize": 2048})
    assert d.functions["ProcessorFunction"].timeout == 30
    assert d.functions["ProcessorFunction"].memory_mb == 2048
    assert json.loads(d.queues["ProcessingQueue"]["attributes"]["RedrivePolicy"])["maxReceiveCount"] == "5"
    assert d.queues["ProcessingQueue"]["attributes"]["VisibilityTimeout"] == "180"  # 6 x 30 via the mapping


def test_provision_is_idempotent(tmp_path):
    d = read_definition(overrides={"MaxReceiveCount": 2})
    emu = Emulator(tmp_path / "emu").start()
    try:
        first = provision(emu.endpoint_url, d)
        assert first == expected_resources(emu.endpoint_url, d)
        journal = tmp_path / "emu" / "journal.bin"
        size = journal.stat().st_size
        assert provision(emu.endpoint_url, d) == first
        assert journal.stat().st_size == size  # nothing re-created, nothing journaled
        d.queues["ProcessingQueue"]["attributes"]["VisibilityTimeout"] = "7"
        provision(emu.endpoint_url, d)  # a changed attribute is updated in place
        aws = clients(emu.endpoint_url)
        sqs = aws["sqs"]
        attrs = sqs.get_queue_attributes(QueueUrl=first.queue_url, AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "7"
        s3 = aws["s3"]
        conf = s3.get_bucket_notification_configuration(Bucket=LOCAL_NAMES["SourceBucket"])
        assert conf["QueueConfigurations"][0]["QueueArn"] == first.queue_arn
    finally:
        emu.stop()
    emu = Emulator(tmp_path / "emu").start()  # after a replay, provisioning finds everything
    try:
        size = (tmp_path / "emu" / "journal.bin").stat().st_size
        assert provision(emu.endpoint_url, d).table == "imagepipe-metadata"
        assert (tmp_path / "emu" / "journal.bin").stat().st_size == size
    finally:
        emu.stop()
