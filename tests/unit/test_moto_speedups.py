"""The emulator's moto speed-ups change no byte on the wire.

The same DynamoDB and SQS requests are sent to moto's WSGI app in two fresh processes, one
with ``moto_speedups.install()`` and one without; every response body must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from pipeline import PROJECT_ROOT
from pipeline.stack.moto_speedups import plain_attribute_value

_SCRIPT = textwrap.dedent(
    r'''
    import io, json, sys
    if sys.argv[1] == "fast":
        from pipeline.stack import moto_speedups
        moto_speedups.install()
        assert moto_speedups.installed()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    app = DomainDispatcherApplication(create_backend_app)

    def call(service, target, payload):
        body = json.dumps(payload).encode()
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "5000", "HTTP_HOST": "127.0.0.1:5000", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
               "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1", "HTTP_X_AMZ_TARGET": target,
               "CONTENT_TYPE": "application/x-amz-json-1.0",
               "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                                     + service + "/aws4_request, SignedHeaders=host, Signature=x"}
        out = {}
        data = b"".join(app(env, lambda status, headers, exc=None: out.setdefault("s", status)))
        return out["s"], data.decode()

    d = lambda op, p: call("dynamodb", "DynamoDB_20120810." + op, p)
    d("CreateTable", {"TableName": "t", "BillingMode": "PAY_PER_REQUEST",
                      "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                      "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}]})
    item = {"pk": {"S": "IMAGE#1"}, "sk": {"S": "JOB#1"}, "n": {"N": "-1.5e3"}, "b": {"B": "AAEC"},
            "t": {"BOOL": True}, "z": {"NULL": True}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]},
            "bs": {"BS": ["AAE=", "AgM="]}, "e": {"S": ""}, "u": {"S": "ünï \" \\ ✓"},
            "m": {"M": {"deep": {"M": {"l": {"L": [{"N": "1"}, {"S": "x"}, {"M": {}}, {"L": []},
                                                    {"B": "AQ=="}]}}}, "bin": {"B": "AQI="}}},
            "l": {"L": [{"M": {"k": {"N": "0"}}}, {"NULL": True}]}}
    key = {"pk": {"S": "IMAGE#1"}, "sk": {"S": "JOB#1"}}
    results = [
        d("PutItem", {"TableName": "t", "Item": item, "ReturnValues": "ALL_OLD"}),
        d("PutItem", {"TableName": "t", "Item": item, "ReturnValues": "ALL_OLD"}),
        d("GetItem", {"TableName": "t", "Key": key, "ConsistentRead": True}),
        d("GetItem", {"TableName": "t", "Key": key, "ProjectionExpression": "m.deep, l[0], #s",
                      "ExpressionAttributeNames": {"#s": "ss"}}),
        d("UpdateItem", {"TableName": "t", "Key": key, "ReturnValues": "ALL_NEW",
                         "UpdateExpression": "SET #s = :s, r = :r ADD attempts :one",
                         "ConditionExpression": "attribute_exists(pk)",
                         "ExpressionAttributeNames": {"#s": "status"},
                         "ExpressionAttributeValues": {":s": {"S": "running"}, ":one": {"N": "1"},
                                                       ":r": {"M": {"x": {"L": [{"N": "2"}]}}}}}),
        d("UpdateItem", {"TableName": "t", "Key": key, "ReturnValues": "UPDATED_OLD",
                         "UpdateExpression": "SET #s = :s", "ExpressionAttributeNames": {"#s": "status"},
                         "ExpressionAttributeValues": {":s": {"S": "done"}}}),
        d("UpdateItem", {"TableName": "t", "Key": key, "UpdateExpression": "SET #s = :s",
                         "ConditionExpression": "#s = :other", "ExpressionAttributeNames": {"#s": "status"},
                         "ExpressionAttributeValues": {":s": {"S": "x"}, ":other": {"S": "nope"}}}),
        d("UpdateItem", {"TableName": "t", "Key": key, "UpdateExpression": "SET #s = :s",
                         "ExpressionAttributeNames": {"#s": "status"},
                         "ExpressionAttributeValues": {":s": {"S": "again"}}}),
        d("Query", {"TableName": "t", "KeyConditionExpression": "pk = :p",
                    "ExpressionAttributeValues": {":p": {"S": "IMAGE#1"}}}),
        d("Scan", {"TableName": "t"}),
        d("BatchGetItem", {"RequestItems": {"t": {"Keys": [key]}}}),
        d("GetItem", {"TableName": "t", "Key": {"pk": {"S": "missing"}, "sk": {"S": "x"}}}),
        d("DeleteItem", {"TableName": "t", "Key": key, "ReturnValues": "ALL_OLD"}),
    ]
    q = lambda op, p: call("sqs", "AmazonSQS." + op, p)
    url = json.loads(q("CreateQueue", {"QueueName": "q"})[1])["QueueUrl"]
    results.append(q("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]}))
    print(json.dumps(results))
    '''
)


def _responses(mode: str) -> list[list[str]]:
    # one hash seed for both processes: moto keeps string/number sets in Python sets, whose
    # order (and so the order of an SS/NS list on the wire) follows string hashing
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _without_volatile(status_body: list[str]) -> tuple[str, str]:
    """SQS attributes carry creation timestamps: compare those responses without them."""
    status, body = status_body
    data = json.loads(body)
    attrs = data.get("Attributes")
    if isinstance(attrs, dict):
        for name in ("CreatedTimestamp", "LastModifiedTimestamp"):
            attrs.pop(name, None)
        body = json.dumps(data, sort_keys=True)
    return status, body


def test_speedups_change_no_response_byte():
    fast, slow = _responses("fast"), _responses("slow")
    assert len(fast) == len(slow) == 14
    for got, want in zip(fast, slow, strict=True):
        assert _without_volatile(got) == _without_volatile(want)
    statuses = [s for s, _ in fast]
    # 13 successes and the failed condition
    assert statuses.count("200 OK") == 13 and any(s.startswith("400") for s in statuses)
    assert '"B": "AAEC"' in fast[2][1]  # binary values went through moto's own serializer unchanged


def test_plain_attribute_value_accepts_only_json_native_values():
    assert plain_attribute_value({"S": "x"}) and plain_attribute_value({"N": "1"})
    assert plain_attribute_value({"M": {"a": {"L": [{"BOOL": False}, {"NULL": True}, {"SS": ["a"]}]}}})
    assert not plain_attribute_value({"B": "AQ=="})
    assert not plain_attribute_value({"M": {"a": {"L": [{"BS": ["AQ=="]}]}}})
    assert not plain_attribute_value({"N": 1})  # a number that is not a string: moto's path decides
    assert not plain_attribute_value({"S": "x", "N": "1"})
    assert not plain_attribute_value("x")
