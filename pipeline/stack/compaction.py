"""Journal compaction on a clean shutdown, verified before it replaces anything.

Replaying DynamoDB item history is the slow part of a restart (moto's ``UpdateItem`` costs
milliseconds each, and a job's record is updated several times). A compacted journal keeps
every record except the DynamoDB item writes, and appends one synthetic ``PutItem`` per live
item; the SQS ledger is folded to its live messages. The result is replayed into a fresh
moto in a separate process and its state digest compared with the live one: only an exact
match replaces the journal (atomically); otherwise the full journal is kept.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.stack import sqs_ledger
from pipeline.stack.classify import action_of, service_of
from pipeline.stack.journal import Record, encode

DDB_ITEM_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


def _is_ddb_item_write(rec: Record) -> bool:
    env = rec.header.get("env") or {}
    return service_of(env) == "dynamodb" and action_of(env, rec.body) in DDB_ITEM_WRITES


def _put_item_record(region: str, table: str, item: dict[str, Any]) -> Record:
    body = json.dumps({"TableName": table, "Item": item}, separators=(",", ":")).encode()
    env = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/x-amz-json-1.0",
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "0",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem",
        "HTTP_AUTHORIZATION": (
            f"AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=compacted"
        ),
    }
    return Record({"t": "http", "env": env, "compacted": True}, body)


def _live_items() -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(account, region, table, item)`` for every item in moto's DynamoDB, sorted."""
    from moto.dynamodb.models import dynamodb_backends

    out = []
    for acct, regions in list(dynamodb_backends.items()):
        for region, backend in list(regions.items()):
            for name, table in list(backend.tables.items()):
                for item in table.all_items():
                    out.append((acct, region, name, item.to_json()["Attributes"]))
    out.sort(key=lambda t: (t[0], t[1], t[2], json.dumps(t[3], sort_keys=True)))
    return out


def compact(records: Iterable[Record]) -> list[Record]:
    """The compacted journal for the state currently in this process's moto."""
    ledger = sqs_ledger.Ledger()
    kept: list[Record] = []
    for rec in records:
        if sqs_ledger.is_ledger_entry(rec.header):
            ledger.feed(rec.header)
        elif rec.header.get("t") == "http" and not _is_ddb_item_write(rec):
            kept.append(rec)
    items = [_put_item_record(region, table, item) for _acct, region, table, item in _live_items()]
    return kept + items + [Record(e) for e in ledger.entries()]


def digest() -> dict[str, Any]:
    """A digest of the emulated state: DynamoDB items, S3 objects, queues and their live messages."""
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends

    h = hashlib.sha256()
    for entry in _live_items():
        h.update(json.dumps(entry, sort_keys=True).encode())
    s3 = hashlib.sha256()
    for _acct, parts in sorted(s3_backends.items()):
        for _part, backend in sorted(parts.items()):
            for bname, bucket in sorted(backend.buckets.items()):
                s3.update(bname.encode())
                for key in sorted(bucket.keys.keys()):
                    obj = bucket.keys[key]
                    s3.update(
                        json.dumps(
                            [key, obj.etag, obj.size, sorted(dict(obj.metadata).items())], default=str
                        ).encode()
                    )
    queues: dict[str, list[str]] = {}
    for _acct, regions in sorted(sqs_backends.items()):
        for _region, backend in sorted(regions.items()):
            for qname, queue in sorted(backend.queues.items()):
                queues[qname] = sorted(m.id for m in queue._messages)
    return {"dynamodb": h.hexdigest(), "s3": s3.hexdigest(), "sqs": queues}


def verify(records: list[Record], expected: dict[str, Any], timeout: float = 120.0) -> bool:
    """Replay ``records`` in a fresh emulator process; True when its digest equals ``expected``."""
    with tempfile.TemporaryDirectory(prefix="imagepipe-compact-") as tmp:
        path = Path(tmp) / "journal.bin"
        with open(path, "wb") as fh:
            for r in records:
                fh.write(encode(r))
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.stack.compaction", tmp],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        return False
    try:
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False
    return bool(got == expected)


def _digest_main(journal_dir: str) -> int:
    """Child: replay the journal in ``journal_dir`` into a fresh moto and print its digest."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from pipeline.stack.journal import Journal
    from pipeline.stack.persistence import replay

    journal = Journal(journal_dir)
    records = journal.open()
    journal.close()
    counts = replay(DomainDispatcherApplication(create_backend_app), records)
    if counts["http_failed"]:
        return 1
    print(json.dumps(digest()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_digest_main(sys.argv[1]))
