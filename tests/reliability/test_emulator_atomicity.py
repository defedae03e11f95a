"""The emulator's DynamoDB must be item-atomic like DynamoDB: a read never sees half of an
UpdateItem. (Found by the load test: a poll saw ``status: succeeded`` without ``result``.)"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from pipeline.stack.emulator import Emulator

N_ATTRS = 20
UPDATES = 120


def _table(endpoint: str) -> Any:
    return boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing").Table("t")


@pytest.mark.slow
def test_reads_never_see_a_half_applied_update_item(tmp_path):
    emulator = Emulator(tmp_path / "emulator").start()
    try:
        ddb = boto3.resource("dynamodb", endpoint_url=emulator.endpoint_url, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing")
        table = ddb.create_table(
            TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST")
        table.put_item(Item={"pk": "a", **{f"a{i}": 0 for i in range(N_ATTRS)}})
        names = {f"#a{i}": f"a{i}" for i in range(N_ATTRS)}
        setter = "SET " + ", ".join(f"#a{i} = :v" for i in range(N_ATTRS))
        stop = threading.Event()
        torn: list[dict[str, Any]] = []
        reads = [0]

        def reader() -> None:
            mine = _table(emulator.endpoint_url)
            while not stop.is_set():
                item = mine.get_item(Key={"pk": "a"}, ConsistentRead=True)["Item"]
                reads[0] += 1
                if len({item[f"a{i}"] for i in range(N_ATTRS)}) != 1:
                    torn.append(item)

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for n in range(1, UPDATES + 1):  # every update sets all attributes to the same value
                table.update_item(Key={"pk": "a"}, UpdateExpression=setter, ExpressionAttributeNames=names,
                                  ExpressionAttributeValues={":v": n})
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert reads[0] > 0
        assert torn == [], f"{len(torn)} of {reads[0]} reads saw a half-applied update, e.g. {torn[0]}"
    finally:
        emulator.stop()
