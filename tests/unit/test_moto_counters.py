"""The emulator's counter ``ADD`` fast path (pipeline/stack/moto_counters.py) against moto's own
``UpdateItem``: the same items and the same errors, for the plain counter adds it takes and for
everything it must leave to moto."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from pipeline.stack import moto_counters

KEY = {"pk": {"S": "R"}, "sk": {"S": "a"}}


def _adds(**pairs: int) -> dict[str, Any]:
    names = {f"#a{i}": name for i, name in enumerate(pairs)}
    values = {f":v{i}": {"N": str(v)} for i, v in enumerate(pairs.values())}
    return {"UpdateExpression": "ADD " + ", ".join(f"#a{i} :v{i}" for i in range(len(pairs))),
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


CASES: list[tuple[str, dict[str, Any]]] = [
    ("creates the item", {"Key": KEY, **_adds(n=1, **{"h:ratio:12": 1, "e:timeout": 2})}),
    ("adds to it", {"Key": KEY, **_adds(n=5, **{"h:ratio:12": -1, "bytes": 10**20})}),
    ("another item", {"Key": {"pk": {"S": "R"}, "sk": {"S": "b"}}, **_adds(n=-3)}),
    ("spaces and a shared value", {"Key": KEY, "UpdateExpression": " ADD  #a :v ,#b  :v ",
                                   "ExpressionAttributeNames": {"#a": "n", "#b": "m"},
                                   "ExpressionAttributeValues": {":v": {"N": "7"}}}),
    ("a decimal (moto's path)", {"Key": KEY, **_adds(n=1),
                                 "ExpressionAttributeValues": {":v0": {"N": "1.5"}}}),
    ("a string attribute", {"Key": KEY, **_adds(s=1)}),
    ("an unused name", {"Key": KEY, **_adds(n=1), "ExpressionAttributeNames": {"#a0": "n", "#zz": "x"}}),
    ("an unused value", {"Key": KEY, **_adds(n=1), "ExpressionAttributeValues": {":v0": {"N": "1"},
                                                                                 ":zz": {"N": "2"}}}),
    ("a key attribute", {"Key": KEY, **_adds(sk=1)}),
    ("the same path twice", {"Key": KEY, "UpdateExpression": "ADD #a :v, #b :w",
                             "ExpressionAttributeNames": {"#a": "n", "#b": "n"},
                             "ExpressionAttributeValues": {":v": {"N": "1"}, ":w": {"N": "2"}}}),
    ("a set", {"Key": KEY, **_adds(n=1), "ExpressionAttributeValues": {":v0": {"NS": ["1"]}}}),
    ("with a condition", {"Key": KEY, **_adds(n=1), "ConditionExpression": "attribute_exists(pk)"}),
    ("a failed condition", {"Key": {"pk": {"S": "R"}, "sk": {"S": "zz"}}, **_adds(n=1),
                            "ConditionExpression": "attribute_exists(pk)"}),
    ("SET and ADD", {"Key": KEY, "UpdateExpression": "SET #a = :v ADD #b :w",
                     "ExpressionAttributeNames": {"#a": "x", "#b": "n"},
                     "ExpressionAttributeValues": {":v": {"N": "1"}, ":w": {"N": "2"}}}),
    # moto's update limit (405,000 bytes) is above its put limit: 50 long counter names pass it
    ("too large", {"Key": {"pk": {"S": "R"}, "sk": {"S": "big"}},
                   **_adds(**{f"{'c' * 120}{i}": 1 for i in range(50)})}),
]


def _run(patched: bool) -> tuple[list[Any], list[dict[str, Any]]]:
    from moto.dynamodb.models import DynamoDBBackend

    saved = DynamoDBBackend.update_item
    if patched:
        moto_counters.install()
    try:
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            client.create_table(
                TableName="t", BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                           {"AttributeName": "sk", "KeyType": "RANGE"}])
            client.put_item(TableName="t", Item={**KEY, "s": {"S": "text"}})
            client.put_item(TableName="t", Item={"pk": {"S": "R"}, "sk": {"S": "big"},
                                                  "blob": {"S": "x" * (400_000 - 30)}})
            outcomes: list[Any] = []
            for _, kwargs in CASES:
                try:
                    client.update_item(TableName="t", **kwargs)
                    outcomes.append("ok")
                except ClientError as exc:
                    outcomes.append((exc.response["Error"]["Code"], exc.response["Error"]["Message"]))
            items = client.scan(TableName="t")["Items"]
            return outcomes, sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
    finally:
        DynamoDBBackend.update_item = saved  # type: ignore[method-assign]


def test_same_items_and_errors_as_moto():
    assert _run(patched=True) == _run(patched=False)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_which_updates_take_the_fast_path(name, kwargs):
    adds = moto_counters.plain_adds(kwargs["UpdateExpression"], kwargs.get("ExpressionAttributeNames"),
                                    kwargs.get("ExpressionAttributeValues"))
    fast = name in ("creates the item", "adds to it", "another item", "spaces and a shared value",
                    "a string attribute", "a key attribute", "with a condition", "a failed condition",
                    "too large")
    # a string attribute, a key attribute and a condition pass the expression check but are sent to moto
    # by update_item itself (the attribute's type, the key schema and the condition are checked there)
    assert (adds is not None) is fast
