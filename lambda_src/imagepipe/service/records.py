"""DynamoDB single-table records for images and jobs (layout in docs/architecture.md).

Job status only moves forward, enforced with conditional writes::

    queued -> running -> succeeded | failed      (queued -> failed too; never out of a terminal state)

``running -> running`` is allowed (a redelivered message re-claims a job whose worker died).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from imagepipe.errors import BadRequest, NotFound, Throttled
from imagepipe.service import rollups
from imagepipe.service.awserrors import translate_aws_errors

IMAGE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
JOB_ID_RE = re.compile(r"^([0-9a-f]{32})-([0-9a-f]{16})$")
TERMINAL = frozenset({"succeeded", "failed"})
STATUSES = ("queued", "running", "succeeded", "failed")
#: how an image arrived (stored on the image and its jobs as ``arrival``; none stored = presigned)
ARRIVALS = rollups.ARRIVALS
_INTERNAL_KEYS = frozenset({"pk", "sk", "gsi1pk", "gsi1sk"})
#: documents stored as JSON text (see :func:`as_json_text`)
JSON_TEXT_FIELDS = ("recipe", "facts")
MAX_PAGE = 100
MAX_BATCH_GET = 100  # DynamoDB's BatchGetItem limit
_BATCH_ATTEMPTS = 5
Page = tuple[list[dict[str, Any]], str | None]


ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    """UTC now as ISO 8601 with microseconds; sorts lexicographically."""
    return datetime.now(UTC).strftime(ISO_FORMAT)


def parse_iso(iso: str | None) -> datetime | None:
    """The UTC time a ``now_iso`` stamp names (``None`` when empty or unparsable)."""
    if not iso:
        return None
    try:
        return datetime.strptime(iso, ISO_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def to_dynamo(value: Any) -> Any:
    """Make ``value`` storable: floats become ``Decimal`` (non-finite ones ``None``)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Inverse of :func:`to_dynamo` for JSON: ``Decimal`` becomes ``int`` or ``float``."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [from_dynamo(v) for v in value]
    return value


def as_json_text(value: Any) -> Any:
    """A recipe or facts document as it is stored: compact JSON text (``None`` stays ``None``).

    These two documents are only ever read and written whole, never queried by attribute, and
    they are the largest part of a job item (≈ 100 nested attributes). As one string they cost
    DynamoDB, boto3 and the emulator a fraction of a nested map on every write and read of the
    item; the figures a table is read for (``result``: sizes, ratio, metrics, timings) stay
    typed attributes with ``Decimal`` numbers."""
    if value is None or isinstance(value, str):
        return value
    # the numbers a map would have stored: non-finite floats become null, 2.0 reads back as 2
    return json.dumps(from_dynamo(to_dynamo(value)), separators=(",", ":"), allow_nan=False)


def _from_json_text(value: Any) -> Any:
    """Inverse of :func:`as_json_text`; a nested map (written before the text form) is kept."""
    return json.loads(value) if isinstance(value, str) else value


def public(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """An item without its key attributes, with plain JSON numbers and the JSON-text documents
    (``recipe``, ``facts``) decoded."""
    if item is None:
        return None
    out = from_dynamo({k: v for k, v in item.items() if k not in _INTERNAL_KEYS})
    for name in JSON_TEXT_FIELDS:
        if name in out:
            out[name] = _from_json_text(out[name])
    return out


def _stored(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` ready for ``PutItem``: JSON-text documents encoded, numbers as ``Decimal``."""
    out = dict(record)
    for name in JSON_TEXT_FIELDS:
        if name in out:
            out[name] = as_json_text(out[name])
    return to_dynamo(out)


def make_job_id(image_id: str, recipe_hash: str) -> str:
    """``{image_id}-{recipe_hash}``: a duplicate request or event is the same job."""
    return f"{image_id}-{recipe_hash}"


def split_job_id(job_id: str) -> tuple[str, str] | None:
    """``(image_id, recipe_hash)`` or ``None`` when ``job_id`` is malformed."""
    m = JOB_ID_RE.match(job_id or "")
    return (m.group(1), m.group(2)) if m else None


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    """An opaque cursor from DynamoDB's ``LastEvaluatedKey``."""
    if not last_key:
        return None
    raw = json.dumps(from_dynamo(last_key), sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, gsi1pk: str) -> dict[str, str]:
    """The ``ExclusiveStartKey`` inside ``cursor``; ``BadRequest`` when it is not ours."""
    if len(cursor) > 4096:
        raise BadRequest("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor") from exc
    if (
        not isinstance(key, dict)
        or set(key) != _INTERNAL_KEYS
        or not all(isinstance(v, str) and 0 < len(v) <= 1024 for v in key.values())
        or key["gsi1pk"] != gsi1pk
    ):
        raise BadRequest("invalid cursor")
    return key


def conditional_failed(exc: ClientError) -> bool:
    """Whether ``exc`` is DynamoDB refusing a conditional write."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def query_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a query, following ``LastEvaluatedKey`` (raw items, not ``public``)."""
    items: list[dict[str, Any]] = []
    while True:
        resp = table.query(**kwargs)
        items.extend(resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _until_processed(send: Callable[[list[Any]], list[Any]], requests: list[Any]) -> list[Any]:
    """Send a batch request (``BatchGetItem`` keys, ``BatchWriteItem`` puts) and what DynamoDB
    leaves unprocessed again, backing off between attempts (at most ``_BATCH_ATTEMPTS``);
    ``send`` returns the unprocessed part. Returns what is still left (empty: all done)."""
    for attempt in range(_BATCH_ATTEMPTS):
        requests = send(requests)
        if not requests:
            break
        time.sleep(min(0.05 * 2**attempt, 1.0))
    return requests


def _image_item(image: dict[str, Any]) -> dict[str, Any]:
    image_id, created = image["image_id"], image["created_at"]
    return {**_stored(image), "pk": f"IMAGE#{image_id}", "sk": "IMAGE", "gsi1pk": "IMAGES",
            "gsi1sk": f"{created}#{image_id}"}


def _job_item(job: dict[str, Any]) -> dict[str, Any]:
    """A new job's item: ``queued``."""
    job_id, image_id, created = job["job_id"], job["image_id"], job["created_at"]
    return {**_stored(job), "status": "queued", "pk": f"IMAGE#{image_id}", "sk": f"JOB#{job_id}",
            "gsi1pk": "JOBS", "gsi1sk": f"{created}#{job_id}"}


class Records:
    """Images and jobs in the metadata table."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # --- images ------------------------------------------------------------------------

    @translate_aws_errors
    def put_image(self, image: dict[str, Any]) -> None:
        """Create an image record (``image_id`` and ``created_at`` required); never overwrites."""
        self.table.put_item(Item=_image_item(image), ConditionExpression="attribute_not_exists(pk)")

    @translate_aws_errors
    def put_image_if_new(self, image: dict[str, Any]) -> bool:
        """Create an image record unless one with this id exists (a duplicate S3 event of a bucket
        drop, whose id derives from the object version); ``True`` when this call created it."""
        try:
            self.put_image(image)
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    @translate_aws_errors
    def put_new_image_and_job(self, image: dict[str, Any], job: dict[str, Any]) -> None:
        """Create a new image and its upload job in one ``BatchWriteItem``.

        Only for ids made in this request (``uuid4`` image id, job id derived from it): nothing
        can exist under them, so the ``attribute_not_exists`` guard of every other create (which
        ``BatchWriteItem`` cannot carry) has nothing to guard, and one request replaces two
        (measured through the local stack: 3.7 ms instead of 6.6 ms). Items DynamoDB leaves
        unprocessed are retried; ``Throttled`` if some are still left."""
        client, name = self.table.meta.client, self.table.name

        def write(puts: list[dict[str, Any]]) -> list[dict[str, Any]]:
            resp = client.batch_write_item(RequestItems={name: puts})
            return resp.get("UnprocessedItems", {}).get(name, [])

        left = _until_processed(write, [{"PutRequest": {"Item": _image_item(image)}},
                                        {"PutRequest": {"Item": _job_item(job)}}])
        if left:
            raise Throttled(f"DynamoDB left {len(left)} of the new image's records unwritten; retry")

    @translate_aws_errors
    def get_image(self, image_id: str) -> dict[str, Any] | None:
        """The image record (public form) or ``None``."""
        if not IMAGE_ID_RE.match(image_id or ""):
            return None
        resp = self.table.get_item(Key={"pk": f"IMAGE#{image_id}", "sk": "IMAGE"}, ConsistentRead=True)
        return public(resp.get("Item"))

    @translate_aws_errors
    def get_images(self, image_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Several image records (public form) by id, read together (``BatchGetItem``, strongly
        consistent); ids that are malformed or have no record are absent from the result."""
        wanted = sorted({i for i in image_ids if IMAGE_ID_RE.match(i or "")})
        client, name = self.table.meta.client, self.table.name
        out: dict[str, dict[str, Any]] = {}

        def read(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
            resp = client.batch_get_item(RequestItems={name: {"Keys": keys, "ConsistentRead": True}})
            for item in resp.get("Responses", {}).get(name, []):
                image = public(item) or {}
                out[image["image_id"]] = image
            return resp.get("UnprocessedKeys", {}).get(name, {}).get("Keys", [])

        for start in range(0, len(wanted), MAX_BATCH_GET):
            left = _until_processed(read, [{"pk": f"IMAGE#{i}", "sk": "IMAGE"}
                                           for i in wanted[start:start + MAX_BATCH_GET]])
            if left:
                raise Throttled(f"DynamoDB left {len(left)} image reads unprocessed; retry the request")
        return out

    @translate_aws_errors
    def record_upload(self, image_id: str, key: str, size: int, etag: str | None,
                      at: str | None = None) -> dict[str, Any] | None:
        """Record that the original landed (size, ETag; the first landing time is kept), in one
        conditional write that also reads: the updated image record, or ``None`` when no image
        has this id *and* this key."""
        if not IMAGE_ID_RE.match(image_id or ""):
            return None
        resp = self._update_if(
            Key={"pk": f"IMAGE#{image_id}", "sk": "IMAGE"},
            UpdateExpression="SET #s = :up, #b = :b, etag = :e, "
            "uploaded_at = if_not_exists(uploaded_at, :t)",
            ConditionExpression="attribute_exists(pk) AND #k = :k",
            ExpressionAttributeNames={"#s": "status", "#b": "bytes", "#k": "key"},
            ExpressionAttributeValues={
                ":up": "uploaded", ":b": int(size), ":e": etag, ":t": at or now_iso(), ":k": key,
            },
            ReturnValues="ALL_NEW",
        )
        return None if resp is None else public(resp["Attributes"])

    @translate_aws_errors
    def set_image_facts(self, image_id: str, facts: dict[str, Any]) -> None:
        """Store the original's facts (from the engine's ``facts["input"]``), first writer wins."""
        self._update_if(
            Key={"pk": f"IMAGE#{image_id}", "sk": "IMAGE"},
            UpdateExpression="SET facts = if_not_exists(facts, :f)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":f": as_json_text(facts)},
        )

    def _update_if(self, **kwargs: Any) -> dict[str, Any] | None:
        """``UpdateItem`` guarded by its ``ConditionExpression``: the response, or ``None`` when
        the condition did not hold (the item is gone or in another state)."""
        try:
            return self.table.update_item(**kwargs)
        except ClientError as exc:
            if conditional_failed(exc):
                return None
            raise

    @translate_aws_errors
    def list_images(self, limit: int = 20, cursor: str | None = None, arrival: str | None = None) -> Page:
        """Images newest first, one page, and the cursor of the next page (``arrival``: only
        images that came that way; the page may then hold fewer than ``limit``)."""
        return self._list("IMAGES", limit, cursor, arrival)

    # --- jobs ----------------------------------------------------------------------------

    @translate_aws_errors
    def create_job(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a ``queued`` job unless one with this id exists; ``(job, created)``."""
        job_id = job["job_id"]
        item = _job_item(job)
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            existing = self.get_job(job_id)
            if existing is None:  # deleted (with its image) between the two calls
                raise NotFound(f"job {job_id} was deleted with its image") from exc
            return existing, False
        return public(item) or {}, True

    @translate_aws_errors
    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job (public form) or ``None``."""
        parts = split_job_id(job_id)
        if parts is None:
            return None
        key = {"pk": f"IMAGE#{parts[0]}", "sk": f"JOB#{job_id}"}
        resp = self.table.get_item(Key=key, ConsistentRead=True)
        return public(resp.get("Item"))

    def _job_key(self, job_id: str) -> dict[str, str]:
        parts = split_job_id(job_id)
        if parts is None:
            raise BadRequest(f"malformed job id {job_id!r}")
        return {"pk": f"IMAGE#{parts[0]}", "sk": f"JOB#{job_id}"}

    @translate_aws_errors
    def claim_job(self, job_id: str, deadline_at: str | None = None) -> dict[str, Any] | None:
        """``queued|running -> running`` (attempts + 1); ``None`` when the job is terminal or gone.

        ``deadline_at`` (ISO) is when this attempt's invocation ends; it stays on the record as
        ``attempt_deadline_at`` until the attempt ends (a terminal write, or ``end_attempt``), so
        the next claim can tell an attempt that was killed. The returned job then carries
        ``previous_attempt`` = ``{"attempt", "started_at", "deadline_at"}`` of an attempt that
        never ended (absent otherwise)."""
        t = now_iso()
        values: dict[str, Any] = {":running": "running", ":queued": "queued", ":t": t, ":one": 1}
        update = "SET #s = :running, started_at = :t, updated_at = :t"
        if deadline_at is not None:
            update += ", attempt_deadline_at = :d"
            values[":d"] = deadline_at
        else:
            update += " REMOVE attempt_deadline_at"
        resp = self._update_if(
            Key=self._job_key(job_id),
            UpdateExpression=update + " ADD attempts :one",
            ConditionExpression="attribute_exists(pk) AND #s IN (:queued, :running)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
        if resp is None:
            return None
        old = public(resp["Attributes"]) or {}
        job = {k: v for k, v in old.items() if k not in ("attempt_deadline_at", "previous_attempt")}
        job.update(status="running", started_at=t, updated_at=t, attempts=int(old.get("attempts") or 0) + 1)
        if deadline_at is not None:
            job["attempt_deadline_at"] = deadline_at
        if old.get("status") == "running" and old.get("attempt_deadline_at"):
            job["previous_attempt"] = {"attempt": int(old.get("attempts") or 0),
                                       "started_at": old.get("started_at"),
                                       "deadline_at": old["attempt_deadline_at"]}
        return job

    @translate_aws_errors
    def end_attempt(self, job_id: str) -> bool:
        """The running attempt ended without a verdict (a transient failure: the message will be
        redelivered): forget its deadline, so the next claim does not take it for a killed one."""
        return self._update_if(
            Key=self._job_key(job_id),
            UpdateExpression="SET updated_at = :t REMOVE attempt_deadline_at",
            ConditionExpression="attribute_exists(pk) AND #s = :running",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":running": "running", ":t": now_iso()},
        ) is not None

    @translate_aws_errors
    def succeed_job(self, job_id: str, result: dict[str, Any], facts: dict[str, Any],
                    job: dict[str, Any] | None = None) -> bool:
        """``running -> succeeded`` with the result, and the job's rollup add in the same
        transaction (``service/rollups.py``); ``False`` when the job was not running (nothing
        is written, nothing counted). ``job`` is the claimed record (read when not given)."""
        return self._finish(job_id, job, "succeeded", ("running",), {"result": result},
                            "#r = :r, facts = :f", " REMOVE #e", {"#r": "result", "#e": "error"},
                            {":r": to_dynamo(result), ":f": as_json_text(facts)})

    @translate_aws_errors
    def fail_job(self, job_id: str, code: str, message: str, job: dict[str, Any] | None = None) -> bool:
        """``queued|running -> failed`` with ``{code, message}``, counted in the rollups in the
        same transaction; ``False`` if already terminal or gone. ``job``: the record, if at hand."""
        error = {"code": code, "message": message[:1000]}
        return self._finish(job_id, job, "failed", ("queued", "running"), {"error": error},
                            "#e = :e", "", {"#e": "error"}, {":e": error})

    def _finish(self, job_id: str, job: dict[str, Any] | None, status: str, sources: tuple[str, ...],
                changes: dict[str, Any], set_clause: str, remove_clause: str, names: dict[str, str],
                values: dict[str, Any]) -> bool:
        """The guarded terminal write (``sources -> status`` plus ``set_clause``) and the job's
        rollup add as one transaction: both or neither, so a duplicate or reordered delivery (its
        condition refused) adds nothing. ``False`` when the job is gone or was not in ``sources``."""
        job = job if job is not None else self.get_job(job_id)
        if job is None:
            return False
        after = {**job, "job_id": job_id, "status": status, **changes}
        states = {f":from{i}": state for i, state in enumerate(sources)}
        update = {
            "Key": self._job_key(job_id),
            "UpdateExpression": f"SET #s = :status, {set_clause}, out_format = :fmt, finished_at = :t, "
            f"updated_at = :t{remove_clause}",
            "ConditionExpression": f"attribute_exists(pk) AND #s IN ({', '.join(states)})",
            "ExpressionAttributeNames": {"#s": "status", **names},
            "ExpressionAttributeValues": {":status": status, **states, **values,
                                          ":fmt": rollups.output_format(after), ":t": now_iso()},
        }
        items = rollups.transition_items(self.table.name, update, after)
        return rollups.transact(self.table.meta.client, items) is None

    @translate_aws_errors
    def jobs_for_image(self, image_id: str) -> list[dict[str, Any]]:
        """Every job of one image, newest first."""
        cond = Key("pk").eq(f"IMAGE#{image_id}") & Key("sk").begins_with("JOB#")
        raw = query_all(self.table, KeyConditionExpression=cond, ConsistentRead=True)
        items = [public(i) or {} for i in raw]
        items.sort(key=lambda j: (j.get("created_at", ""), j.get("job_id", "")), reverse=True)
        return items

    @translate_aws_errors
    def list_jobs(self, limit: int = 20, cursor: str | None = None, arrival: str | None = None) -> Page:
        """Jobs of every image, newest first, one page, and the next page's cursor (``arrival``
        as in :meth:`list_images`)."""
        return self._list("JOBS", limit, cursor, arrival)

    # --- shared ----------------------------------------------------------------------------

    @translate_aws_errors
    def delete_image_records(self, image_id: str) -> int:
        """Delete the image item and every item under it (jobs, sweeps); returns the count.

        A terminal job is deleted in one transaction with the subtraction of its rollup
        contribution (on the status it was read with), so History's totals keep equalling
        the job records; the other items go in batches."""
        items = query_all(self.table, KeyConditionExpression=Key("pk").eq(f"IMAGE#{image_id}"),
                          ConsistentRead=True)
        plain = []
        for item in items:
            if item["sk"].startswith("JOB#") and item.get("status") in TERMINAL:
                delete = {"Key": {"pk": item["pk"], "sk": item["sk"]}, "ConditionExpression": "#s = :s",
                          "ExpressionAttributeNames": {"#s": "status"},
                          "ExpressionAttributeValues": {":s": item["status"]}}
                job = public(item) or {}
                rollups.transact(self.table.meta.client,
                                 rollups.transition_items(self.table.name, delete, job, sign=-1))
            else:
                plain.append({"pk": item["pk"], "sk": item["sk"]})
        with self.table.batch_writer() as batch:
            for key in plain:
                batch.delete_item(Key=key)
        return len(items)

    def _list(self, gsi1pk: str, limit: int, cursor: str | None, arrival: str | None = None) -> Page:
        kwargs: dict[str, Any] = {
            "IndexName": "gsi1",
            "KeyConditionExpression": Key("gsi1pk").eq(gsi1pk),
            "ScanIndexForward": False,
            "Limit": max(1, min(int(limit), MAX_PAGE)),
        }
        if arrival is not None:  # records written before ``arrival`` existed came presigned
            cond = Attr("arrival").eq(arrival)
            if arrival == "presigned":
                cond = cond | Attr("arrival").not_exists()
            kwargs["FilterExpression"] = cond
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, gsi1pk)
        resp = self.table.query(**kwargs)
        items = [public(i) or {} for i in resp.get("Items", [])]
        return items, encode_cursor(resp.get("LastEvaluatedKey"))
