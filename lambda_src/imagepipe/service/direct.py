"""``POST /images``: the image bytes sent straight to the API (curl, Postman), as
``multipart/form-data`` or as a raw ``image/*`` body. The bytes are written to the source bucket
under a new image's key, so the S3 event that follows runs the upload job exactly as after a
presigned upload (one job when a recipe or preset is given)."""

from __future__ import annotations

import json
from typing import Any

from imagepipe.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from imagepipe.service.api import forget_image, new_image, resolve_recipe, write_new_image
from imagepipe.service.backend import Backend
from imagepipe.service.config import ALLOWED_CONTENT_TYPES
from imagepipe.service.multipart import Part, parse_form
from imagepipe.service.sniff import GENERIC_TYPES, SNIFF_BYTES, sniff_image_type

#: Lambda's synchronous request payload limit: the whole API Gateway event, JSON, in bytes
LAMBDA_REQUEST_LIMIT = 6_291_456
#: kept for the event's other fields: headers (an HTTP API takes at most 10 KiB of them), the
#: request context, the query string
EVENT_RESERVE = 16_384
#: The largest request body ``POST /images`` takes: API Gateway base64-encodes a binary body
#: (4 bytes for every 3) into an event that must stay within Lambda's limit.
#: (6_291_456 - 16_384) // 4 * 3 = 4_706_304 bytes (4.49 MiB).
DIRECT_MAX_BODY_BYTES = (LAMBDA_REQUEST_LIMIT - EVENT_RESERVE) // 4 * 3
FORM_FIELDS = frozenset({"file", "recipe", "preset", "filename"})
QUERY_FIELDS = frozenset({"recipe", "preset", "filename"})


def _too_large(n: int, cap: int, why: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{n} bytes is over the cap of {cap} bytes for POST /images ({why}); "
                           "upload larger files with POST /uploads (a presigned S3 upload)")


def _recipe_text(text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        recipe = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"recipe is not valid JSON: {exc}",
                         details=[{"field": "recipe", "message": "not valid JSON"}]) from None
    if not isinstance(recipe, dict):
        raise BadRequest("recipe must be a JSON object",
                         details=[{"field": "recipe", "message": "not an object"}])
    return recipe


def _preset(text: str | None) -> str | None:
    if text is None:
        return None
    if not 1 <= len(text) <= 100:
        raise BadRequest("preset must be 1-100 characters",
                         details=[{"field": "preset", "message": "1-100 characters"}])
    return text


Parsed = tuple[bytes, str | None, dict[str, Any]]  # the file, its declared type, the options


def _from_form(body: bytes, content_type: str, query: dict[str, str]) -> Parsed:
    if query:
        raise BadRequest(f"with multipart/form-data, send {sorted(QUERY_FIELDS)} as form fields, "
                         f"not as query parameters (got {sorted(query)})")
    fields = parse_form(body, content_type)
    unknown = set(fields) - FORM_FIELDS
    if unknown:
        raise BadRequest(f"unknown form field(s) {sorted(unknown)}; POST /images takes {sorted(FORM_FIELDS)}",
                         details=[{"field": f, "message": "unknown field"} for f in sorted(unknown)])
    file: Part | None = fields.get("file")
    if file is None:
        raise BadRequest("the form has no 'file' field (the image)",
                         details=[{"field": "file", "message": "required"}])
    name = fields["filename"].text() if "filename" in fields else file.filename
    return file.data, file.content_type, {
        "filename": name,
        "recipe": _recipe_text(fields["recipe"].text()) if "recipe" in fields else None,
        "preset": _preset(fields["preset"].text()) if "preset" in fields else None,
    }


def _from_raw(body: bytes, content_type: str, query: dict[str, str]) -> Parsed:
    unknown = set(query) - QUERY_FIELDS
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {sorted(unknown)}; "
                         f"POST /images takes {sorted(QUERY_FIELDS)}",
                         details=[{"field": f, "message": "unknown parameter"} for f in sorted(unknown)])
    return body, content_type, {
        "filename": query.get("filename"),
        "recipe": _recipe_text(query.get("recipe")),
        "preset": _preset(query.get("preset")),
    }


def create_direct_image(backend: Backend, body: bytes, content_type: str | None,
                        query: dict[str, str] | None) -> dict[str, Any]:
    """``POST /images`` → 201 ``{image_id, key, job_id, filename, content_type, bytes, max_bytes}``.

    Checks, in order: the body's size (413 over :data:`DIRECT_MAX_BODY_BYTES`), its shape (415
    unless ``multipart/form-data`` or ``image/*``; 400 for a malformed form or unknown fields),
    the file (400 empty; 413 over the upload cap; 415 unless the declared type is an accepted
    image type and the bytes are one), then the recipe or preset (422)."""
    cfg = backend.config
    query = dict(query or {})
    if len(body) > DIRECT_MAX_BODY_BYTES:
        raise _too_large(len(body), DIRECT_MAX_BODY_BYTES,
                         "what one Lambda request carries through API Gateway once base64-encoded")
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct == "multipart/form-data":
        data, declared, opts = _from_form(body, content_type or "", query)
    elif ct.startswith("image/"):
        data, declared, opts = _from_raw(body, ct, query)
    else:
        raise UnsupportedMediaType(
            f"POST /images takes multipart/form-data with a 'file' field (curl -F file=@photo.jpg) "
            f"or the raw image with Content-Type image/* (curl -H 'content-type: image/jpeg' "
            f"--data-binary @photo.jpg), not {ct or 'no content type'!r}; to get a presigned upload, "
            "POST JSON to /uploads")
    if not data:
        raise BadRequest("the image is empty (0 bytes)")
    if len(data) > cfg.max_upload_bytes:
        raise _too_large(len(data), cfg.max_upload_bytes, "the upload cap")
    sniffed = sniff_image_type(data[:SNIFF_BYTES])
    declared = (declared or "").split(";", 1)[0].strip().lower()
    if declared in GENERIC_TYPES:
        declared = sniffed or declared
    if declared not in ALLOWED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {declared or 'none'!r} is not accepted; "
            f"use one of {sorted(ALLOWED_CONTENT_TYPES)}")
    if sniffed is None:
        raise UnsupportedMediaType(
            f"the bytes sent as {declared} are not an image of an accepted type "
            f"({', '.join(sorted(ALLOWED_CONTENT_TYPES))})")
    preset = backend.catalog.label(opts["preset"])
    resolved = resolve_recipe(backend, opts["recipe"], preset)
    filename = opts["filename"] or f"upload.{sniffed.split('/')[1].replace('jpeg', 'jpg')}"
    image, job = new_image(backend, filename, sniffed, resolved, preset, arrival="direct",
                           announced_bytes=len(data))
    stored = False
    try:
        write_new_image(backend, image, job)
        backend.storage.put_original(image["key"], data, sniffed)  # its S3 event runs the job
        stored = True
    finally:
        if not stored:
            forget_image(backend, image["image_id"])
    return {
        "image_id": image["image_id"],
        "key": image["key"],
        "job_id": image.get("job_id"),
        "filename": image["filename"],
        "content_type": sniffed,
        "bytes": len(data),
        "max_bytes": min(DIRECT_MAX_BODY_BYTES, cfg.max_upload_bytes),
    }
