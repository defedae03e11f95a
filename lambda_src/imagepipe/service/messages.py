"""What arrives on the processing queue, parsed: S3 event notifications (keys URL-decoded
exactly once), ``s3:TestEvent`` (ignored) and job messages sent by the API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from imagepipe.errors import BadRequest


@dataclass(frozen=True)
class ObjectCreated:
    """One ``s3:ObjectCreated:*`` record."""

    bucket: str
    key: str
    size: int
    etag: str | None
    event_name: str
    version_id: str | None = None  # only in events of a versioned bucket


@dataclass(frozen=True)
class JobMessage:
    """``{"type": "job", "job_id", "image_id", "source_key"?, "recipe"?}`` from ``POST /jobs``.

    ``source_key`` and ``recipe`` are hints that let the processor fetch and process the
    original while it claims the job; the claimed record stays the authority (a hint that
    disagrees with it is ignored). A recipe larger than ``MAX_RECIPE_HINT`` bytes (a big
    watermark image) is not sent: SQS messages are limited to 256 KiB."""

    job_id: str
    image_id: str
    source_key: str | None = None
    recipe: dict[str, Any] | None = field(default=None, repr=False)  # logs name the job, not its recipe


@dataclass(frozen=True)
class SweepPartMessage:
    """``{"type": "sweep_part", "sweep_id", "image_id", "part"}`` from ``POST /sweeps``."""

    sweep_id: str
    image_id: str
    part: int


@dataclass(frozen=True)
class ExportMessage:
    """``{"type": "export", "export_id"}`` from ``POST /exports`` (service/exports.py)."""

    export_id: str


Work = ObjectCreated | JobMessage | SweepPartMessage | ExportMessage


MAX_RECIPE_HINT = 16 * 1024


def job_message(job_id: str, image_id: str, source_key: str | None = None,
                recipe: dict[str, Any] | None = None) -> str:
    """The queue body for a job (the hints are optional, see :class:`JobMessage`)."""
    body: dict[str, Any] = {"type": "job", "job_id": job_id, "image_id": image_id}
    if source_key is not None:
        body["source_key"] = source_key
    if recipe is not None and len(json.dumps(recipe)) <= MAX_RECIPE_HINT:
        body["recipe"] = recipe
    return json.dumps(body)


def sweep_part_message(sweep_id: str, image_id: str, part: int) -> str:
    """The queue body for one part of a sweep (see imagepipe.service.sweeps)."""
    return json.dumps({"type": "sweep_part", "sweep_id": sweep_id, "image_id": image_id, "part": part})


def _s3_record(rec: Any) -> ObjectCreated | None:
    if not isinstance(rec, dict) or not isinstance(rec.get("s3"), dict):
        raise BadRequest("S3 event record without an 's3' object")
    name = str(rec.get("eventName", ""))
    if not name.startswith("ObjectCreated:"):
        return None  # removals, restores, ... are not work
    s3 = rec["s3"]
    try:
        bucket = str(s3["bucket"]["name"])
        raw_key = str(s3["object"]["key"])
    except (KeyError, TypeError) as exc:
        raise BadRequest(f"S3 event record missing {exc}") from exc
    obj = s3["object"]
    etag = obj.get("eTag") or obj.get("etag")
    return ObjectCreated(
        bucket=bucket,
        key=unquote_plus(raw_key),  # S3 event keys are form-encoded: decode once, never twice
        size=int(obj.get("size") or 0),
        etag=str(etag) if etag else None,
        event_name=name,
        version_id=str(obj["versionId"]) if obj.get("versionId") else None,
    )


def parse_body(body: str) -> list[Work]:
    """Every unit of work in one SQS message body; ``[]`` for ``s3:TestEvent`` and for
    non-creation S3 events. Raises ``BadRequest`` for a body that is none of the known kinds."""
    try:
        msg = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"queue message is not JSON: {exc}") from exc
    if not isinstance(msg, dict):
        raise BadRequest("queue message is not a JSON object")
    if msg.get("Event") == "s3:TestEvent":
        return []
    if msg.get("type") == "job":
        job_id, image_id, source_key = msg.get("job_id"), msg.get("image_id"), msg.get("source_key")
        recipe = msg.get("recipe")
        if not isinstance(job_id, str) or not isinstance(image_id, str):
            raise BadRequest("job message needs string job_id and image_id")
        if source_key is not None and not isinstance(source_key, str):
            raise BadRequest("job message source_key must be a string")
        if recipe is not None and not isinstance(recipe, dict):
            raise BadRequest("job message recipe must be an object")
        return [JobMessage(job_id=job_id, image_id=image_id, source_key=source_key, recipe=recipe)]
    if msg.get("type") == "sweep_part":
        sweep_id, image_id, part = msg.get("sweep_id"), msg.get("image_id"), msg.get("part")
        if not isinstance(sweep_id, str) or not isinstance(image_id, str) or type(part) is not int:
            raise BadRequest("sweep_part message needs string sweep_id, image_id and integer part")
        return [SweepPartMessage(sweep_id=sweep_id, image_id=image_id, part=part)]
    if msg.get("type") == "export":
        if not isinstance(msg.get("export_id"), str):
            raise BadRequest("export message needs a string export_id")
        return [ExportMessage(export_id=msg["export_id"])]
    if isinstance(msg.get("Records"), list):
        out: list[Work] = []
        for rec in msg["Records"]:
            if isinstance(rec, dict) and rec.get("eventSource") not in (None, "aws:s3"):
                raise BadRequest(f"unexpected event source {rec.get('eventSource')!r}")
            item = _s3_record(rec)
            if item is not None:
                out.append(item)
        return out
    raise BadRequest(f"unknown queue message (keys: {sorted(msg)[:8]})")
