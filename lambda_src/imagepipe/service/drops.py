"""Bucket drops: objects put under the upload prefix by any S3 client (console, ``aws s3 cp`` /
``sync``, an SDK), not through ``POST /uploads``. Each object version gets one image record,
whose id derives from the bucket, the key and the version (the S3 ``versionId`` when the bucket
is versioned, else the ETag), so duplicated and reordered events find the record they made.
The matching drop rule (``service/presets.py``) decides the recipe; the job runner runs it."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from imagepipe.service.backend import Backend
from imagepipe.service.messages import ObjectCreated
from imagepipe.service.presets import Catalog
from imagepipe.service.records import now_iso
from imagepipe.service.sniff import SNIFF_BYTES, content_type_of
from imagepipe.service.storage import safe_filename

logger = logging.getLogger(__name__)


def drop_image_id(bucket: str, key: str, version: str) -> str:
    """32 hex chars from the object version: the same object version, the same image."""
    return hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()[:32]


def drop_filename(key: str) -> str:
    """The image's ``filename``: the key's last segment, made safe."""
    return safe_filename(key.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class Drop:
    """The image record of a dropped object version; ``created`` by this event; ``superseded``
    when the key already holds other bytes (a newer version landed before this event was handled:
    processing the key now would give this record the newer version's output)."""

    image: dict[str, Any]
    created: bool
    superseded: bool = False


def record_drop(backend: Backend, catalog: Catalog, ev: ObjectCreated) -> Drop | None:
    """The image record of a dropped object version, created on the first event for it;
    ``None`` for what is not an image drop (a "folder" key ending in ``/``, an object deleted
    before its event was handled).

    A new record gets ``arrival: "drop"``, ``drop_rule`` (the matched rule's prefix or
    ``default``) and the rule's recipe (none for ``skip``); its ``content_type`` is the object's,
    sniffed from its first bytes when generic. Later events for the same version read the record
    and never re-apply the rules, so changed rules do not change what an object already got."""
    records = backend.records
    if ev.key.endswith("/"):
        logger.info("ignoring s3://%s/%s: a folder marker, not an object to process", ev.bucket, ev.key)
        return None
    version = ev.version_id or ev.etag or ""
    image_id = drop_image_id(ev.bucket, ev.key, version)
    # No read first: the conditional put below is the check (a first event, the common case,
    # costs one ranged GET and one write; a duplicate one more read).
    peek = backend.storage.peek_source(ev.key, SNIFF_BYTES)
    if peek is None:
        logger.warning("ignoring s3://%s/%s: deleted before its event was handled", ev.bucket, ev.key)
        return None
    head, stored_type, current_etag = peek
    superseded = bool(ev.etag and current_etag and current_etag != ev.etag.strip('"'))
    rule = catalog.rule_for(ev.key)
    recipe = catalog.recipe_of(rule)
    at = now_iso()
    image: dict[str, Any] = {
        "image_id": image_id,
        "filename": drop_filename(ev.key),
        "key": ev.key,
        # a superseded version's bytes are gone: its type is not the newer object's
        "content_type": "application/octet-stream" if superseded else content_type_of(stored_type, head),
        "status": "uploaded",
        "bytes": ev.size,
        "etag": ev.etag,
        "created_at": at,
        "uploaded_at": at,
        "recipe": recipe[0] if recipe else None,
        "recipe_hash": recipe[1] if recipe else None,
        "preset": rule.preset,
        "arrival": "drop",
        "drop_rule": rule.label,
    }
    if ev.version_id:
        image["version_id"] = ev.version_id
    if records.put_image_if_new(image):
        logger.info("recorded bucket drop s3://%s/%s as image %s (rule %s)", ev.bucket, ev.key, image_id,
                    rule.label)
        return Drop(image, True, superseded)
    # a duplicate event: the record the first one made decides (not today's rules)
    return Drop(records.get_image(image_id) or image, False, superseded)
