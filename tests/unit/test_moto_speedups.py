"""The emulator's moto speed-ups change no byte on the wire and no value in moto's model.

The same DynamoDB and SQS requests are sent to moto's WSGI app in two fresh processes, one
with ``moto_speedups.install()`` and one without; every response body must be identical.
S3 requests (presigned POSTs, PUT, GET/HEAD, the S3 -> SQS events) go through the emulator's
whole WSGI stack the same way, where moto takes the form the POST-policy check parsed.
The item-model replacements are also compared in this process with moto's own methods on
generated attribute trees.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import PROJECT_ROOT
from pipeline.stack import moto_speedups
from pipeline.stack.moto_speedups import plain_attribute_value

_SCRIPT = textwrap.dedent(
    r'''
    import io, json, sys
    if sys.argv[1] == "fast":
        from pipeline.stack import moto_speedups
        moto_speedups.install()
        moto_speedups.install()  # idempotent
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

    results = []
    def d(label, op, p):
        status, body = call("dynamodb", "DynamoDB_20120810." + op, p)
        results.append([label, status, body])
        return body

    def table(name, **extra):
        d("create " + name, "CreateTable", {
            "TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"}
                                     for a in ("pk", "sk", "gpk", "gsk")],
            "GlobalSecondaryIndexes": [{"IndexName": "g1", "Projection": {"ProjectionType": "ALL"},
                                        "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"},
                                                      {"AttributeName": "gsk", "KeyType": "RANGE"}]}],
            **extra})

    table("t")
    recipe = {"M": {"version": {"N": "1"}, "format": {"S": "jpeg"}, "quality": {"N": "85"},
                    "resize": {"M": {"width": {"N": "1024"}, "fit": {"S": "inside"},
                                     "upscale": {"BOOL": False}}},
                    "watermark": {"NULL": True}, "ops": {"L": [{"S": "sharpen"}, {"N": "0.5"}]}}}
    item = {"pk": {"S": "IMAGE#1"}, "sk": {"S": "JOB#1"}, "gpk": {"S": "JOBS"}, "gsk": {"S": "2026#1"},
            "n": {"N": "-1.5e3"}, "b": {"B": "AAEC"}, "t": {"BOOL": True}, "z": {"NULL": True},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": ["AAE=", "AgM="]},
            "e": {"S": ""},
            "u": {"S": "ünï \" \\ ✓"}, "recipe": recipe, "status": {"S": "queued"},
            "m": {"M": {"deep": {"M": {"l": {"L": [{"N": "1"}, {"S": "x"}, {"M": {}}, {"L": []},
                                                    {"B": "AQ=="}]}}},
                        "bin": {"B": "AQI="}, "bs": {"BS": ["AQ==", "Ag=="]}, "ss": {"SS": ["x", "y"]},
                        "ns": {"NS": ["3", "4"]}, "ünï": {"S": "✓"}}},
            "l": {"L": [{"M": {"k": {"N": "0"}}}, {"NULL": True}, {"SS": ["q"]}]}}
    key = {"pk": {"S": "IMAGE#1"}, "sk": {"S": "JOB#1"}}
    d("put", "PutItem", {"TableName": "t", "Item": item, "ReturnValues": "ALL_OLD"})
    d("put again", "PutItem", {"TableName": "t", "Item": item, "ReturnValues": "ALL_OLD"})
    d("put 2", "PutItem", {"TableName": "t", "Item": {**item, "sk": {"S": "JOB#2"}, "gsk": {"S": "2026#2"}}})
    d("get", "GetItem", {"TableName": "t", "Key": key, "ConsistentRead": True})
    d("get projected", "GetItem", {"TableName": "t", "Key": key,
                                   "ProjectionExpression": "m.deep, l[0], #s, m.bs",
                                   "ExpressionAttributeNames": {"#s": "ss"}})
    names = {"#s": "status", "#u": "ünï"}
    for i, mode in enumerate(["NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"]):
        d("update " + mode, "UpdateItem", {
            "TableName": "t", "Key": key, "ReturnValues": mode,
            "UpdateExpression": "SET #s = :s, m.deep.x = :x, m.#u = :u, recipe.resize.width = :w, "
                                "m.tags = list_append(if_not_exists(m.tags, :empty), :tag), "
                                "seen = if_not_exists(seen, :s), l[1] = :x "
                                "REMOVE m.bin, recipe.ops[0] ADD attempts :one, ss :more, m.ns :nums",
            "ConditionExpression": "attribute_exists(pk) AND recipe.#f = :jpeg",
            "ExpressionAttributeNames": {**names, "#f": "format"},
            "ExpressionAttributeValues": {":s": {"S": "s%d" % i},
                                          ":x": {"M": {"i": {"N": str(i)}, "b": {"B": "AAA="}}},
                                          ":u": {"SS": ["u%d" % i]}, ":w": {"N": str(100 + i)},
                                          ":empty": {"L": []},
                                          ":tag": {"L": [{"S": "t%d" % i}]}, ":one": {"N": "1"},
                                          ":more": {"SS": ["c%d" % i]}, ":nums": {"NS": [str(i + 10)]},
                                          ":jpeg": {"S": "jpeg"}}})
    d("get after updates", "GetItem", {"TableName": "t", "Key": key, "ConsistentRead": True})
    d("succeed job", "UpdateItem", {
        "TableName": "t", "Key": key, "ReturnValues": "ALL_NEW",
        "UpdateExpression": "SET #s = :ok, #r = :r, facts = :f, finished_at = :t REMOVE #e",
        "ConditionExpression": "attribute_exists(pk) AND #s = :cur",
        "ExpressionAttributeNames": {"#s": "status", "#r": "result", "#e": "error"},
        "ExpressionAttributeValues": {":ok": {"S": "succeeded"}, ":cur": {"S": "s4"}, ":t": {"S": "2026"},
                                      ":r": {"M": {"bytes": {"N": "48846"}, "ssim": {"N": "0.974506"},
                                                   "timings_ms": {"M": {"decode": {"N": "18.3"}}}}},
                                      ":f": {"M": {"exif": {"M": {"gps": {"BOOL": False}}}}}}})
    d("condition fails, ALL_OLD", "UpdateItem", {
        "TableName": "t", "Key": key, "UpdateExpression": "SET #s = :s", "ConditionExpression": "#s = :other",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD", "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "x"}, ":other": {"S": "nope"}}})
    d("condition fails", "UpdateItem", {
        "TableName": "t", "Key": key, "UpdateExpression": "SET #s = :s", "ConditionExpression": "#s = :other",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "x"}, ":other": {"S": "nope"}}})
    d("update creates item", "UpdateItem", {
        "TableName": "t", "Key": {"pk": {"S": "IMAGE#1"}, "sk": {"S": "JOB#3"}},
        "ReturnValues": "UPDATED_NEW", "UpdateExpression": "SET m = :m ADD n :one",
        "ExpressionAttributeValues": {":m": item["m"], ":one": {"N": "2"}}})
    d("overlapping paths", "UpdateItem", {"TableName": "t", "Key": key,
                                          "UpdateExpression": "SET m = :x, m.deep = :x",
                                          "ExpressionAttributeValues": {":x": {"S": "x"}}})
    d("two SET clauses", "UpdateItem", {"TableName": "t", "Key": key,
                                        "UpdateExpression": "SET a = :x SET b = :x",
                                        "ExpressionAttributeValues": {":x": {"S": "x"}}})
    d("list_append on a missing path", "UpdateItem", {
        "TableName": "t", "Key": key, "UpdateExpression": "SET nope = list_append(nope, :l)",
        "ExpressionAttributeValues": {":l": {"L": []}}})
    d("ADD to a string", "UpdateItem", {"TableName": "t", "Key": key, "UpdateExpression": "ADD u :one",
                                        "ExpressionAttributeValues": {":one": {"N": "1"}}})
    # item size: moto allows exactly 405000 bytes (keys + values, UTF-8), not one more
    for label, n in (("put at the size limit", 404991), ("put one byte over", 404992)):
        d(label, "PutItem", {"TableName": "t", "Item": {"pk": {"S": "P"}, "sk": {"S": "S"},
                                                        "m": {"M": {"é": {"S": "x" * n}}}}})
    for sk, label, n in (("1", "update to the size limit", 4990), ("2", "update one byte over", 4991)):
        big = {"pk": {"S": "Q"}, "sk": {"S": sk}, "big": {"S": "x" * 400000}}
        d("put big " + sk, "PutItem", {"TableName": "t", "Item": big})
        d(label, "UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "Q"}, "sk": {"S": sk}},
                                "UpdateExpression": "SET y = :v",
                                "ExpressionAttributeValues": {":v": {"S": "v" * n}}})
        d("get big " + sk, "GetItem", {"TableName": "t", "Key": {"pk": {"S": "Q"}, "sk": {"S": sk}},
                                       "ProjectionExpression": "pk, sk, y"})
    d("query", "Query", {"TableName": "t", "KeyConditionExpression": "pk = :p AND begins_with(sk, :j)",
                         "ExpressionAttributeValues": {":p": {"S": "IMAGE#1"}, ":j": {"S": "JOB#"}}})
    d("query projected", "Query", {"TableName": "t", "KeyConditionExpression": "pk = :p",
                                   "ProjectionExpression":
                                       "sk, m.deep.l[4], m.bs, #r.timings_ms, recipe.resize",
                                   "ExpressionAttributeNames": {"#r": "result"},
                                   "ExpressionAttributeValues": {":p": {"S": "IMAGE#1"}}})
    d("query index, filtered", "Query", {"TableName": "t", "IndexName": "g1", "ScanIndexForward": False,
                                         "KeyConditionExpression": "gpk = :g",
                                         "FilterExpression": "recipe.quality > :q",
                                         "ExpressionAttributeValues": {":g": {"S": "JOBS"},
                                                                       ":q": {"N": "50"}}})
    d("scan filtered", "Scan", {"TableName": "t", "FilterExpression": "contains(m.ss, :y)",
                                "ExpressionAttributeValues": {":y": {"S": "y"}}})
    d("batch get", "BatchGetItem", {"RequestItems": {"t": {"Keys": [key]}}})
    d("get missing", "GetItem", {"TableName": "t", "Key": {"pk": {"S": "missing"}, "sk": {"S": "x"}}})
    tx_update = {"TableName": "t", "Key": key, "UpdateExpression": "SET m.deep.tx = :v",
                 "ExpressionAttributeValues": {":v": {"N": "1"}}}
    d("transaction", "TransactWriteItems", {"TransactItems": [{"Update": tx_update}]})
    d("transaction rolled back", "TransactWriteItems", {"TransactItems": [
        {"Update": {**tx_update, "ExpressionAttributeValues": {":v": {"N": "2"}}}},
        {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "IMAGE#1"}, "sk": {"S": "JOB#2"}},
                            "ConditionExpression": "attribute_not_exists(pk)"}}]})
    d("get after transactions", "GetItem", {"TableName": "t", "Key": key, "ConsistentRead": True})
    d("delete", "DeleteItem", {"TableName": "t", "Key": key, "ReturnValues": "ALL_OLD"})

    # a table with a stream: UpdateItem's copy of the old item becomes the OldImage
    table("st", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    d("stream put", "PutItem", {"TableName": "st", "Item": item})
    d("stream update", "UpdateItem", {"TableName": "st", "Key": key,
                                      "UpdateExpression": "SET m.deep.x = :v REMOVE m.bin",
                                      "ExpressionAttributeValues": {":v": {"N": "7"}}})
    arn = json.loads(d("describe st", "DescribeTable", {"TableName": "st"}))["Table"]["LatestStreamArn"]
    s = lambda op, p: call("dynamodb", "DynamoDBStreams_20120810." + op, p)
    stream = json.loads(s("DescribeStream", {"StreamArn": arn})[1])["StreamDescription"]
    shard = stream["Shards"][0]["ShardId"]
    it = json.loads(s("GetShardIterator", {"StreamArn": arn, "ShardId": shard,
                                          "ShardIteratorType": "TRIM_HORIZON"})[1])["ShardIterator"]
    status, body = s("GetRecords", {"ShardIterator": it})
    records = [{"eventName": r["eventName"],
                "dynamodb": {k: r["dynamodb"].get(k) for k in ("Keys", "NewImage", "OldImage")}}
               for r in json.loads(body)["Records"]]
    results.append(["stream records", status, json.dumps(records)])

    q = lambda op, p: call("sqs", "AmazonSQS." + op, p)
    url = json.loads(q("CreateQueue", {"QueueName": "q"})[1])["QueueUrl"]
    results.append(["sqs attributes", *q("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})])
    print(json.dumps(results))
    '''
)

#: S3 through the emulator's whole WSGI stack (post-policy check, journal, moto): presigned POSTs
#: (accepted, rejected by the policy, over moto's form limit), PUT, GET/HEAD of what was stored, the
#: S3 -> SQS events. "slow" runs moto as it is (it parses each form itself); "fast" lets it take
#: the form the policy check parsed. Prints the responses and the multipart parses per request.
_S3_SCRIPT = textwrap.dedent(
    r'''
    import hashlib, io, json, re, sys, tempfile
    from pathlib import Path
    from urllib.parse import urlsplit
    import boto3
    from werkzeug import formparser
    from pipeline.stack import moto_speedups
    if sys.argv[1] == "slow":
        moto_speedups.install = lambda: None  # build_app installs them; this process runs moto as it is
    from pipeline.stack import emulator

    parses = []  # multipart parses, per request
    real_parse = formparser.MultiPartParser.parse
    def counting_parse(self, *args, **kwargs):
        parses[-1] += 1
        return real_parse(self, *args, **kwargs)
    formparser.MultiPartParser.parse = counting_parse

    app, _journal, _counts = emulator.build_app(Path(tempfile.mkdtemp()), emulator.DEFAULT_CREDENTIALS)
    assert moto_speedups.installed() == (sys.argv[1] == "fast")
    ENDPOINT = "http://127.0.0.1:5000"
    VOLATILE = {"date", "last-modified", "x-amz-request-id", "x-amz-id-2", "server", "x-amzn-requestid",
                "x-amz-version-id"}

    def call(method, target, body=b"", headers=None):
        url = urlsplit(target if "://" in target else ENDPOINT + target)
        env = {"REQUEST_METHOD": method, "PATH_INFO": url.path, "QUERY_STRING": url.query,
               "RAW_URI": url.path + ("?" + url.query if url.query else ""), "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "5000", "HTTP_HOST": url.netloc, "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
               "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1",
               "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/"
                                     "aws4_request, SignedHeaders=host, Signature=x"}
        for name, value in (headers or {}).items():
            if name.lower() == "authorization" and value is None:
                env.pop("HTTP_AUTHORIZATION")
                continue
            key = name.upper().replace("-", "_")
            env[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
        out = {}
        parses.append(0)
        data = b"".join(app(env, lambda status, hdrs, exc=None: out.update(s=status, h=hdrs)))
        kept = sorted((k.lower(), v) for k, v in out["h"] if k.lower() not in VOLATILE)
        return out["s"], kept, data

    results, parse_counts = [], {}
    def r(label, method, target, body=b"", headers=None, text=True):
        status, hdrs, data = call(method, target, body, headers)
        body = data.hex()
        if text:  # request ids and modification times differ between the processes
            body = re.sub(r"<(RequestId|LastModified)>[^<]*</\1>", "", data.decode("utf-8"))
        results.append([label, status, hdrs, body])
        parse_counts[label] = parses[-1]
        return data

    def sqs(op, payload):
        return json.loads(call("POST", "/", json.dumps(payload).encode(), {
            "X-Amz-Target": "AmazonSQS." + op, "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
                             "SignedHeaders=host, Signature=x"})[2])

    signer = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    BOUNDARY = "imagepipeBoundary0123456789"
    def form(fields, files, boundary=BOUNDARY):
        out, disposition = b"", "--" + boundary + '\r\nContent-Disposition: form-data; name="{}"'
        for name, value in fields.items():
            out += (disposition.format(name) + f"\r\n\r\n{value}\r\n").encode()
        for name, filename, ctype, data in files:
            head = disposition.format(name) + f'; filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
            out += head.encode() + data + b"\r\n"
        ctype = f"multipart/form-data; boundary={boundary}"
        return out + f"--{boundary}--\r\n".encode(), {"Content-Type": ctype}

    def presigned_post(label, key, data, fields=None, conditions=(), extra=None, files=None,
                       ctype="image/jpeg"):
        fields = fields or {}
        conditions = [{"Content-Type": ctype}, ["content-length-range", 1, 4096],
                      *[{k: v} for k, v in fields.items()], *conditions]
        p = signer.generate_presigned_post("src", key, Fields={"Content-Type": ctype, **fields},
                                           Conditions=conditions)
        body, headers = form({**p["fields"], **(extra or {})}, files or [("file", "photo.jpg", ctype, data)])
        return r(label, "POST", p["url"], body, {**headers, "Authorization": None})

    q = sqs("CreateQueue", {"QueueName": "uploads"})["QueueUrl"]
    arn = sqs("GetQueueAttributes", {"QueueUrl": q, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
    r("create src", "PUT", "/src")
    r("create dest", "PUT", "/dest")
    r("notification", "PUT", "/src?notification", (
        "<NotificationConfiguration><QueueConfiguration><Id>up</Id><Queue>" + arn + "</Queue>"
        "<Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name>"
        "<Value>uploads/</Value></FilterRule></S3Key></Filter></QueueConfiguration>"
        "</NotificationConfiguration>").encode())

    jpeg = bytes(range(256)) * 8 + b"\r\n--" + BOUNDARY.encode() + b"x\r\n\r\n\xff\xd9"  # boundary look-alike
    presigned_post("post", "uploads/1/photo.jpg", jpeg)
    presigned_post("post with metadata and status", "uploads/2/photo.jpg", jpeg[:100],
                   fields={"x-amz-meta-recipe": "thumb", "success_action_status": "201"})
    presigned_post("post with filename variable", "uploads/3/${filename}", b"\x00" * 10,
                   conditions=[["starts-with", "$key", "uploads/3/"]], ctype="image/png")
    presigned_post("post with redirect", "uploads/4/a.gif", b"GIF89a",
                   fields={"success_action_redirect": "http://127.0.0.1/done?x=1"}, ctype="image/gif")
    presigned_post("post ignored field", "uploads/5/photo.jpg", jpeg, extra={"x-ignore-note": "ünï ✓"})
    presigned_post("post over moto's form limit", "uploads/6/photo.jpg", jpeg,
                   extra={"x-ignore-big": "y" * 25000})
    presigned_post("post too large", "uploads/7/photo.jpg", b"z" * 4097)
    presigned_post("post two files", "uploads/8/photo.jpg", jpeg,
                   files=[("file", "a.jpg", "image/jpeg", b"a"),
                          ("other", "b.jpg", "image/jpeg", b"b" * 9000)])
    presigned_post("post wrong type", "uploads/9/photo.jpg", jpeg, extra={"Content-Type": "text/html"})
    r("post urlencoded", "POST", "/src", b"key=uploads/10/x&file=abc",
      {"Content-Type": "application/x-www-form-urlencoded", "Authorization": None})

    r("put", "PUT", "/dest/outputs/1/photo.jpg", jpeg[::-1],
      {"Content-Type": "image/jpeg", "x-amz-meta-job": "j-1"})
    for label, key in (("get post", "src/uploads/1/photo.jpg"),
                       ("get post with metadata", "src/uploads/2/photo.jpg"),
                       ("get filename variable", "src/uploads/3/photo.jpg"),
                       ("get ignored field", "src/uploads/5/photo.jpg"),
                       ("get put", "dest/outputs/1/photo.jpg")):
        r(label, "GET", "/" + key, text=False)
        r("head " + label[4:], "HEAD", "/" + key)
    r("get over moto's form limit", "GET", "/src/uploads/6/photo.jpg")
    r("get too large", "GET", "/src/uploads/7/photo.jpg")
    r("list src", "GET", "/src?list-type=2")
    events = []
    while True:
        got = sqs("ReceiveMessage", {"QueueUrl": q, "MaxNumberOfMessages": 10}).get("Messages", [])
        if not got:
            break
        for m in got:
            assert m["MD5OfBody"] == hashlib.md5(m["Body"].encode()).hexdigest()
            event = json.loads(m["Body"])
            event.pop("Time", None)  # the test event's time, and each record's, are volatile
            for rec in event.get("Records", []):
                rec.pop("eventTime")
            events.append(event)
        sqs("DeleteMessageBatch", {"QueueUrl": q, "Entries": [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]})
    events.sort(key=lambda e: json.dumps(e, sort_keys=True))
    results.append(["s3 events", "", [], json.dumps(events)])
    print(json.dumps({"results": results, "parses": parse_counts}))
    '''
)
_S3_LIMIT = 20000  # moto's form memory limit in both processes (its default is 50 MB)


def _s3_run(mode: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "MOTO_MAX_FORM_MEMORY_SIZE": str(_S3_LIMIT)}
    env.pop("IMAGEPIPE_TEST_FAULTS", None)
    proc = subprocess.run([sys.executable, "-c", _S3_SCRIPT, mode], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def s3_both() -> tuple[dict[str, Any], dict[str, Any]]:
    return _s3_run("fast"), _s3_run("slow")


_S3_STATUS = {  # label -> status (anything not listed: 200)
    "post": "204", "post with metadata and status": "201", "post with filename variable": "204",
    "post with redirect": "303", "post ignored field": "204", "post over moto's form limit": "413",
    "post too large": "400", "post two files": "400", "post wrong type": "403", "post urlencoded": "403",
    "get over moto's form limit": "404", "get too large": "404", "s3 events": "",
}
_SHARED = ("post", "post with metadata and status", "post with filename variable", "post with redirect",
           "post ignored field")  # accepted uploads: moto takes the policy check's form


def test_s3_form_sharing_changes_no_response_stored_object_or_event(s3_both):
    fast, slow = (run["results"] for run in s3_both)
    assert [r[0] for r in fast] == [r[0] for r in slow]
    for got, want in zip(fast, slow, strict=True):
        assert got == want, got[0]


def test_s3_requests_reach_the_paths_they_are_meant_to(s3_both):
    fast, slow = s3_both
    by_label = {label: (status, dict(headers), body) for label, status, headers, body in fast["results"]}
    for label, (status, _headers, body) in by_label.items():
        assert status.startswith(_S3_STATUS.get(label, "200")), (label, status, body[:300])
    # moto parsed each accepted upload itself without the speed-ups, took the checked form with them;
    # a form over moto's limit is parsed again without limits by the policy check, then by moto (413)
    for label in _SHARED:
        assert (fast["parses"][label], slow["parses"][label]) == (1, 2), label
    assert fast["parses"]["post over moto's form limit"] == slow["parses"]["post over moto's form limit"] == 3
    jpeg = bytes(range(256)) * 8 + b"\r\n--imagepipeBoundary0123456789x\r\n\r\n\xff\xd9"
    assert by_label["get post"][2] == jpeg.hex()  # the stored bytes are the file part, to the byte
    assert by_label["get post with metadata"][2] == jpeg[:100].hex()
    assert by_label["head post with metadata"][1]["x-amz-meta-recipe"] == "thumb"
    assert by_label["get filename variable"][2] == (b"\x00" * 10).hex()
    assert by_label["get put"][2] == jpeg[::-1].hex()
    assert "EntityTooLarge" in by_label["post too large"][2]
    events = json.loads(by_label["s3 events"][2])
    keys = sorted(e["Records"][0]["s3"]["object"]["key"] for e in events if "Records" in e)
    assert keys == [f"uploads%2F{i}%2F{n}" for i, n in ((1, "photo.jpg"), (2, "photo.jpg"), (3, "photo.jpg"),
                                                        (4, "a.gif"), (5, "photo.jpg"))]


_FAILURES = {  # label -> the error each of these requests must get (in both processes)
    "condition fails, ALL_OLD": "ConditionalCheckFailedException",
    "condition fails": "ConditionalCheckFailedException",
    "overlapping paths": "ValidationException",
    "two SET clauses": "ValidationException",
    "list_append on a missing path": "ValidationException",
    "ADD to a string": "ValidationException",
    "put one byte over": "ValidationException",
    "update one byte over": "ValidationException",
    "transaction rolled back": "TransactionCanceledException",
}


def _responses(mode: str) -> list[list[str]]:
    # one hash seed for both processes: moto keeps string/number sets in Python sets, whose
    # order (and so the order of an SS/NS list on the wire) follows string hashing
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _without_volatile(label: str, body: str) -> str:
    """Creation timestamps (SQS attributes, table descriptions) differ between processes."""
    if label != "sqs attributes" and not label.startswith(("create ", "describe ")):
        return body
    data = json.loads(body)
    for holder in (data.get("Attributes"), data.get("Table"), data.get("TableDescription")):
        if isinstance(holder, dict):
            for name in ("CreatedTimestamp", "LastModifiedTimestamp", "CreationDateTime", "LatestStreamLabel",
                         "LatestStreamArn"):
                holder.pop(name, None)
    return json.dumps(data, sort_keys=True)


@pytest.fixture(scope="module")
def both() -> tuple[list[list[str]], list[list[str]]]:
    return _responses("fast"), _responses("slow")


def test_speedups_change_no_response_byte(both):
    fast, slow = both
    assert [label for label, _, _ in fast] == [label for label, _, _ in slow]
    for (label, status, body), (_, want_status, want_body) in zip(fast, slow, strict=True):
        got, want = _without_volatile(label, body), _without_volatile(label, want_body)
        assert (status, got) == (want_status, want), label


def test_the_requests_reach_the_paths_they_are_meant_to(both):
    """Each request did what its label says, so the comparison covers the patched code."""
    fast, _ = both
    by_label = {label: (status, body) for label, status, body in fast}
    for label, (status, body) in by_label.items():
        want = _FAILURES.get(label)
        if want is None:
            assert status == "200 OK", (label, body[:300])
        else:
            assert status.startswith("400") and want in body, (label, status, body[:300])
    assert "Item size has exceeded" in by_label["put one byte over"][1]
    assert "Item size to update has exceeded" in by_label["update one byte over"][1]
    assert '"y"' in by_label["get big 1"][1] and '"y"' not in by_label["get big 2"][1]
    assert '"Item": {"pk"' in by_label["condition fails, ALL_OLD"][1]  # the old item came back
    assert '"B": "AAEC"' in by_label["get"][1]  # binary values went through moto's own serializer
    for mode in ("ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"):
        assert '"Attributes"' in by_label["update " + mode][1], mode
    records = json.loads(by_label["stream records"][1])
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    assert records[1]["dynamodb"]["OldImage"]["m"]["M"]["bin"] == {"B": "AQI="}  # the image before the update
    assert "bin" not in records[1]["dynamodb"]["NewImage"]["m"]["M"]


def test_plain_attribute_value_accepts_only_json_native_values():
    assert plain_attribute_value({"S": "x"}) and plain_attribute_value({"N": "1"})
    assert plain_attribute_value({"M": {"a": {"L": [{"BOOL": False}, {"NULL": True}, {"SS": ["a"]}]}}})
    assert not plain_attribute_value({"B": "AQ=="})
    assert not plain_attribute_value({"M": {"a": {"L": [{"BS": ["AQ==", "AQI="]}]}}})
    assert not plain_attribute_value({"N": 1})  # a number that is not a string: moto's path decides
    assert not plain_attribute_value({"S": "x", "N": "1"})
    assert not plain_attribute_value("x")


# --- the item-model replacements against moto's own methods, in this (unpatched) process ----

_text = st.text(max_size=6)
_b64 = st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode())
_scalars = st.one_of(
    _text.map(lambda s: {"S": s}),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda n: {"N": str(n)}),
    _b64.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(_text, min_size=1, max_size=3, unique=True).map(lambda v: {"SS": v}),
    st.lists(st.integers(-99, 99).map(str), min_size=1, max_size=3, unique=True).map(lambda v: {"NS": v}),
    st.lists(_b64, min_size=1, max_size=3, unique=True).map(lambda v: {"BS": v}),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(lambda v: {"L": v}),
                            st.dictionaries(_text, inner, max_size=3).map(lambda v: {"M": v})),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def model() -> Any:
    assert not moto_speedups.installed()  # moto's own methods are what this compares with
    from moto.dynamodb.models import dynamo_type, utilities

    return moto_speedups._DynamoModel(dynamo_type, utilities, dynamo_type.bytesize)


def _shape(value: Any) -> Any:
    """A DynamoType tree as plain data (type, value, container types)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if isinstance(value, DynamoType):
        return ("DT", value.type, _shape(value.value))
    if isinstance(value, dict):
        return ("dict", [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    return value


def _containers(value: Any) -> set[int]:
    """Ids of every DynamoType, dict and list in a tree (what a deep copy must not share)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if isinstance(value, DynamoType):
        return {id(value)} | _containers(value.value)
    if isinstance(value, dict):
        return {id(value)}.union(*(_containers(v) for v in value.values()))
    if isinstance(value, list):
        return {id(value)}.union(*(_containers(v) for v in value))
    return set()


@settings(max_examples=150, deadline=None)
@given(value=_values)
def test_item_model_replacements_match_moto(model, value):
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    node = DynamoType(value)
    assert model.size(node) == node.size()
    assert model.regular_json(node) == node.to_regular_json()
    assert model.to_dict(node.to_regular_json()) == model.orig_to_dict(node.to_regular_json())
    clone = model.dynamo_deepcopy(node, {})
    assert _shape(clone) == _shape(copy.deepcopy(node))
    assert not _containers(clone) & _containers(node)
    item = Item(DynamoType({"S": "h"}), None, {"h": {"S": "h"}, "v": value, "w": value})
    mine, theirs = model.item_deepcopy(item, {}), copy.deepcopy(item)
    assert _shape(dict(mine.attrs)) == _shape(dict(theirs.attrs)) and type(mine.attrs) is type(theirs.attrs)
    assert mine.to_json() == theirs.to_json() and mine.attrs["v"] is not item.attrs["v"]


def test_size_limit_is_checked_at_the_same_byte(model):
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    mine, theirs = LimitedSizeDict(), LimitedSizeDict()
    for attrs in (mine, theirs):
        dict.__setitem__(attrs, "a", DynamoType({"M": {"é": {"S": "x" * 404990}}}))  # 2 + 404990 + 1
    # "b" + "1": 2 more bytes, 404995 in all (a string: moto 5.2.6 sizes numbers differently)
    small = DynamoType({"L": [{"S": "1"}]})
    model.limited_setitem(mine, "b", small)
    theirs["b"] = small
    assert mine == theirs
    for attrs, assign in ((mine, lambda k, v: model.limited_setitem(mine, k, v)),
                          (theirs, theirs.__setitem__)):
        assign("c", DynamoType({"S": "1234"}))  # 404995 + 5 = 405000: allowed
        with pytest.raises(ItemSizeTooLarge):
            assign("d", DynamoType({"S": ""}))  # 405001
        assert sorted(attrs) == ["a", "b", "c"]


def _ast_shape(node: Any, parent: Any = None) -> Any:
    """An AST as plain data; checks that every node's ``parent`` is the node holding it."""
    from moto.dynamodb.parsing.ast_nodes import Node

    if not isinstance(node, Node):
        return repr(node)
    assert node.parent is parent or parent is None
    extra = sorted((k, repr(v)) for k, v in vars(node).items() if k not in ("children", "parent"))
    return type(node).__name__, extra, [_ast_shape(c, node) for c in node.children or []]


@pytest.mark.parametrize("expression", [
    "SET #s = :s, m.deep.x = :x, tags = list_append(if_not_exists(tags, :e), :t) REMOVE m.bin, l[0] "
    "ADD n :one DELETE ss :x",
    "SET a = b + :one, c = :c - d",
])
def test_ast_copy_matches_copy_deepcopy(expression):
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    ast = UpdateExpressionParser.make(expression)
    mine, theirs = moto_speedups._node_deepcopy(ast, {}), copy.deepcopy(ast)
    assert _ast_shape(mine) == _ast_shape(theirs) == _ast_shape(ast)
    originals = set()
    stack = [ast]
    while stack:
        n = stack.pop()
        originals.add(id(n))
        stack += [c for c in n.children or [] if hasattr(c, "children")]
    stack = [mine]
    while stack:
        n = stack.pop()
        assert id(n) not in originals and id(n.children) not in originals
        stack += [c for c in n.children or [] if hasattr(c, "children")]
