"""Parity: what the running local stack provisioned equals what template.yaml declares.

The template is read here independently (cfn-lint's decoder), and the emulator is asked
through boto3 what actually exists, so a drift on either side fails: a key or index
renamed in the template, a notification filter the stack does not apply, a queue without
its redrive, an environment variable the local functions do not get.

Parameters the test stack overrides on purpose (visibility timeout, processor timeout for
fast redelivery) are not compared; everything else is.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from tests.unit.test_template import TEMPLATE, function_env


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    template, errors = decode(str(TEMPLATE))
    assert not errors
    return json.loads(json.dumps(template))


@pytest.fixture(scope="module")
def aws(local_stack: Any) -> dict[str, Any]:
    kw = {
        "endpoint_url": local_stack.endpoint_url,
        "region_name": local_stack.env["AWS_REGION"],
        "aws_access_key_id": local_stack.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": local_stack.env["AWS_SECRET_ACCESS_KEY"],
    }
    return {name: boto3.client(name, **kw) for name in ("s3", "sqs", "dynamodb")}


def _props(tpl: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return tpl["Resources"][logical_id]["Properties"]


def _by_name(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(items, key=lambda d: d[key])


def test_table_schema_matches(tpl: dict[str, Any], aws: dict[str, Any], local_stack: Any) -> None:
    declared = _props(tpl, "MetadataTable")
    table = aws["dynamodb"].describe_table(TableName=local_stack.env["IMAGEPIPE_TABLE"])["Table"]
    assert table["KeySchema"] == declared["KeySchema"]
    assert _by_name(table["AttributeDefinitions"], "AttributeName") == _by_name(
        declared["AttributeDefinitions"], "AttributeName"
    )
    assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]
    live = {
        g["IndexName"]: {"KeySchema": g["KeySchema"], "Projection": g["Projection"]}
        for g in table.get("GlobalSecondaryIndexes", [])
    }
    want = {
        g["IndexName"]: {"KeySchema": g["KeySchema"], "Projection": g["Projection"]}
        for g in declared["GlobalSecondaryIndexes"]
    }
    assert live == want


def test_upload_notification_matches(tpl: dict[str, Any], aws: dict[str, Any], local_stack: Any) -> None:
    (declared,) = _props(tpl, "SourceBucket")["NotificationConfiguration"]["QueueConfigurations"]
    live = aws["s3"].get_bucket_notification_configuration(Bucket=local_stack.env["IMAGEPIPE_SOURCE_BUCKET"])
    (queue_cfg,) = live["QueueConfigurations"]
    queue_arn = aws["sqs"].get_queue_attributes(
        QueueUrl=local_stack.env["IMAGEPIPE_QUEUE_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert queue_cfg["QueueArn"] == queue_arn
    assert queue_cfg["Events"] == [declared["Event"]]
    rules = [
        {"Name": r["Name"].lower(), "Value": r["Value"]} for r in queue_cfg["Filter"]["Key"]["FilterRules"]
    ]
    assert rules == declared["Filter"]["S3Key"]["Rules"]
    dest = aws["s3"].get_bucket_notification_configuration(Bucket=local_stack.env["IMAGEPIPE_DEST_BUCKET"])
    assert not dest.get("QueueConfigurations") and not dest.get("LambdaFunctionConfigurations")


def test_queues_match(tpl: dict[str, Any], aws: dict[str, Any], local_stack: Any) -> None:
    sqs = aws["sqs"]
    queue = sqs.get_queue_attributes(QueueUrl=local_stack.env["IMAGEPIPE_QUEUE_URL"], AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(QueueUrl=local_stack.env["IMAGEPIPE_DLQ_URL"], AttributeNames=["All"])
    queue, dlq = queue["Attributes"], dlq["Attributes"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == int(local_stack.env["IMAGEPIPE_MAX_RECEIVE_COUNT"])
    assert int(queue["MessageRetentionPeriod"]) == _props(tpl, "ProcessingQueue")["MessageRetentionPeriod"]
    assert int(dlq["MessageRetentionPeriod"]) == _props(tpl, "ProcessingDLQ")["MessageRetentionPeriod"]
    assert "RedrivePolicy" not in dlq


def test_bucket_cors_matches(tpl: dict[str, Any], aws: dict[str, Any], local_stack: Any) -> None:
    origin = tpl["Parameters"]["DashboardOrigin"]["Default"]
    for logical_id, env_name in (
        ("SourceBucket", "IMAGEPIPE_SOURCE_BUCKET"),
        ("DestinationBucket", "IMAGEPIPE_DEST_BUCKET"),
    ):
        declared = _props(tpl, logical_id)["CorsConfiguration"]["CorsRules"]
        live = aws["s3"].get_bucket_cors(Bucket=local_stack.env[env_name])["CORSRules"]
        assert [r["AllowedOrigins"] for r in live] == [[origin]] * len(declared)
        assert [sorted(r["AllowedMethods"]) for r in live] == [sorted(r["AllowedMethods"]) for r in declared]


def test_function_environment_matches(tpl: dict[str, Any], local_stack: Any) -> None:
    """The local functions get every variable the template sets, with the same literal
    values (resource names and URLs differ by design: they point at the emulator)."""
    declared = function_env(tpl, "ApiFunction")
    live = local_stack.env
    assert {k for k in declared if k.startswith("IMAGEPIPE_")} <= set(live)
    params = tpl["Parameters"]
    for name, value in declared.items():
        if isinstance(value, dict) and value.get("Ref") in params:
            value = params[value["Ref"]]["Default"]
        if isinstance(value, str | int) and name.startswith(("IMAGEPIPE_", "OPENBLAS_")):
            assert live[name] == str(value), name


def test_functions_match(tpl: dict[str, Any], local_stack: Any) -> None:
    for logical_id, fn in local_stack.definition.functions.items():
        props = _props(tpl, logical_id)
        assert fn.handler == props["Handler"]
        for event in props.get("Events", {}).values():
            if event["Type"] == "SQS":
                batch = event["Properties"]["BatchSize"]
                if isinstance(batch, dict):  # a parameter: the local stack runs with its default
                    batch = tpl["Parameters"][batch["Ref"]]["Default"]
                assert fn.batch_size == batch
                assert fn.report_batch_item_failures is True
            if event["Type"] == "Schedule":
                assert fn.schedule == event["Properties"]["Schedule"]
    assert set(local_stack.definition.functions) == {
        k for k, v in tpl["Resources"].items() if v["Type"] == "AWS::Serverless::Function"
    }
