"""The emulator's partition-only ``Query`` (pipeline/stack/moto_query.py) answers exactly as
moto's own (which sorts the whole table per query), after puts, updates that move an item in
the index, deletes, batch writes and a cancelled transaction."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from moto import mock_aws

from pipeline.stack import moto_query, moto_transactions


def _patchable() -> list[tuple[Any, str, Any]]:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    return [(Table, n, getattr(Table, n)) for n in ("query", "put_item", "delete_item")] + [
        (DynamoDBBackend, n, getattr(DynamoDBBackend, n)) for n in ("update_item", "transact_write_items")]


def _queries(table: Any) -> list[Any]:
    out: list[Any] = []

    def pages(**kw: Any) -> list[Any]:
        got = []
        while True:
            resp = table.query(**kw)
            got.append([(i["pk"], i["sk"]) for i in resp["Items"]])
            if "LastEvaluatedKey" not in resp:
                return got
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    for p in ("P0", "P3", "nope"):
        out.append(pages(KeyConditionExpression=Key("pk").eq(p), Limit=7))
        out.append(pages(KeyConditionExpression=Key("pk").eq(p) & Key("sk").between("s010", "s030"),
                         ScanIndexForward=False))
        out.append(pages(KeyConditionExpression=Key("pk").eq(p) & Key("sk").begins_with("s01"),
                         FilterExpression=Attr("n").gt(3)))
    for g in ("G0", "G1"):
        out.append(pages(IndexName="gsi1", KeyConditionExpression=Key("gsi1pk").eq(g), Limit=11,
                         ScanIndexForward=False))
        cond = Key("gsi1pk").eq(g) & Key("gsi1sk").between("t020", "t070")
        out.append(pages(IndexName="gsi1", KeyConditionExpression=cond, FilterExpression=Attr("n").lt(6),
                         Limit=5))
    return out


def _scenario() -> list[Any]:
    rng = random.Random(5)
    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        table = ddb.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                                   {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}],
        )
        snapshots = []
        with table.batch_writer() as batch:
            for i in range(240):
                item = {"pk": f"P{i % 5}", "sk": f"s{i:03d}", "n": rng.randint(0, 9)}
                if i % 3:
                    item |= {"gsi1pk": f"G{i % 2}", "gsi1sk": f"t{rng.randint(0, 99):03d}#{i:03d}"}
                batch.put_item(Item=item)
        snapshots.append(_queries(table))
        for i in range(0, 240, 7):  # move items inside the index, and out of it
            table.update_item(Key={"pk": f"P{i % 5}", "sk": f"s{i:03d}"},
                              UpdateExpression="SET gsi1pk = :g, gsi1sk = :s, n = :n",
                              ExpressionAttributeValues={":g": "G1", ":s": f"t{rng.randint(0, 99):03d}#u{i}",
                                                         ":n": 2})
        for i in range(0, 240, 11):
            table.delete_item(Key={"pk": f"P{i % 5}", "sk": f"s{i:03d}"})
        snapshots.append(_queries(table))
        client = table.meta.client
        with contextlib.suppress(client.exceptions.TransactionCanceledException):  # its put is undone
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": "t",
                         "Item": {"pk": "P0", "sk": "s500", "gsi1pk": "G0", "gsi1sk": "t050"}}},
                {"ConditionCheck": {"TableName": "t", "Key": {"pk": "P1", "sk": "s001"},
                                    "ConditionExpression": "attribute_not_exists(pk)"}}])
        snapshots.append(_queries(table))
        return snapshots


def test_same_answers_as_moto(monkeypatch: Any) -> None:
    import bisect

    saved = _patchable()
    windows: list[int] = []

    class Counting:  # counts the index pages answered from a window (not moto's whole walk)
        bisect_right = staticmethod(bisect.bisect_right)

        @staticmethod
        def bisect_left(*args: Any) -> int:
            windows.append(1)
            return bisect.bisect_left(*args)

    monkeypatch.setattr(moto_query, "bisect", Counting)
    try:
        theirs = _scenario()
        moto_transactions.install()
        moto_query.install()
        ours = _scenario()
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
    assert ours == theirs
    assert len(windows) > 10  # the windowed path answered index pages (and gave moto's answers)
    assert sum(len(page) for q in ours[0] for page in q) > 100  # the queries found things
