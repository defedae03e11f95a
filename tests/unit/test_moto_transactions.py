"""The emulator's ``TransactWriteItems`` (item-level undo) against moto's own (whole-table copy):
the same table contents and the same errors after commits and rollbacks."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline.stack import moto_transactions


def _table() -> Any:
    ddb = boto3.resource("dynamodb", region_name="us-east-1")
    return ddb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )


def _status_update(to: str) -> dict[str, Any]:
    return {"Update": {"TableName": "t", "Key": {"pk": "J", "sk": "1"}, "UpdateExpression": "SET #s = :ok",
                       "ConditionExpression": "#s = :running", "ExpressionAttributeNames": {"#s": "status"},
                       "ExpressionAttributeValues": {":ok": to, ":running": "running"}}}


def _run(patched: bool) -> tuple[list[dict[str, Any]], list[Any]]:
    from moto.dynamodb import models

    saved = models.DynamoDBBackend.transact_write_items
    if patched:
        moto_transactions.install()
    try:
        with mock_aws():
            table = _table()
            client = table.meta.client
            table.put_item(Item={"pk": "J", "sk": "1", "status": "running", "n": 1})
            table.put_item(Item={"pk": "R", "sk": "a", "n": 5, "ver": 1})
            outcomes: list[Any] = []
            txs = [
                # commit: conditional update + ADD on an existing item + ADD creating a new one
                [_status_update("succeeded"),
                 {"Update": {"TableName": "t", "Key": {"pk": "R", "sk": "a"},
                             "UpdateExpression": "ADD n :v, ver :v", "ExpressionAttributeValues": {":v": 2}}},
                 {"Update": {"TableName": "t", "Key": {"pk": "R", "sk": "b"}, "UpdateExpression": "ADD n :v",
                             "ExpressionAttributeValues": {":v": 3}}}],
                # rollback: the ADDs and a put run first, then the last condition fails
                [{"Update": {"TableName": "t", "Key": {"pk": "R", "sk": "a"}, "UpdateExpression": "ADD n :v",
                             "ExpressionAttributeValues": {":v": 100}}},
                 {"Put": {"TableName": "t", "Item": {"pk": "R", "sk": "c", "n": 9}}},
                 {"Delete": {"TableName": "t", "Key": {"pk": "R", "sk": "b"}}},
                 _status_update("failed")],
                # the same item twice: a validation error, nothing written
                [{"Update": {"TableName": "t", "Key": {"pk": "R", "sk": "a"}, "UpdateExpression": "ADD n :v",
                             "ExpressionAttributeValues": {":v": 1}}},
                 {"Delete": {"TableName": "t", "Key": {"pk": "R", "sk": "a"}}}],
            ]
            for tx in txs:
                try:
                    client.transact_write_items(TransactItems=tx)
                    outcomes.append("ok")
                except client.exceptions.ClientError as exc:
                    outcomes.append((exc.response["Error"]["Code"],
                                     [r.get("Code") for r in exc.response.get("CancellationReasons", [])]))
            items = sorted(table.scan()["Items"], key=lambda i: (i["pk"], i["sk"]))
            return items, outcomes
    finally:
        models.DynamoDBBackend.transact_write_items = saved


def test_same_outcome_as_moto() -> None:
    theirs, ours = _run(patched=False), _run(patched=True)
    assert ours == theirs
    items, outcomes = ours
    assert outcomes[0] == "ok" and outcomes[1][0] == "TransactionCanceledException"
    assert {(i["pk"], i["sk"]): int(i["n"]) for i in items} == {("J", "1"): 1, ("R", "a"): 7, ("R", "b"): 3}


@pytest.mark.parametrize("times", [2])
def test_install_is_idempotent(times: int) -> None:
    from moto.dynamodb import models

    saved = models.DynamoDBBackend.transact_write_items
    try:
        for _ in range(times):
            moto_transactions.install()
        assert models.DynamoDBBackend.transact_write_items.original is saved
    finally:
        models.DynamoDBBackend.transact_write_items = saved
