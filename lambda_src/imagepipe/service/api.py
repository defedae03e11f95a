"""The HTTP API's operations as plain functions over a :class:`Backend`. The API handler
maps routes to these; every failure is an ``imagepipe.errors`` exception."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import PurePosixPath
from time import perf_counter
from typing import Any

from pydantic import Field, StrictInt, StrictStr

from imagepipe.core.recipe import parse_recipe
from imagepipe.errors import (
    BadRequest,
    ImagePipeError,
    InvalidRecipe,
    NotFound,
    PayloadTooLarge,
    TransientError,
    UnsupportedMediaType,
)
from imagepipe.service.backend import Backend
from imagepipe.service.config import ALLOWED_CONTENT_TYPES
from imagepipe.service.images import image_or_404, require_uploaded, uploaded_image
from imagepipe.service.joblist import list_jobs_where
from imagepipe.service.jobs import new_job
from imagepipe.service.messages import job_message
from imagepipe.service.records import ARRIVALS, now_iso
from imagepipe.service.requests import RequestBody, page_params, parse_body
from imagepipe.service.stats import FILTERS, MAX_DAYS, parse_filters
from imagepipe.service.storage import safe_filename, upload_key

logger = logging.getLogger(__name__)

MAX_BATCH_JOBS = 100
MAX_RECIPE_BYTES = 256 * 1024


class UploadRequest(RequestBody):
    """``POST /uploads``."""

    filename: StrictStr = Field(min_length=1, max_length=1024)
    content_type: StrictStr = Field(min_length=1, max_length=255)
    size: StrictInt = Field(ge=1)
    recipe: dict[str, Any] | None = None
    preset: StrictStr | None = Field(default=None, min_length=1, max_length=100)


class JobRequest(RequestBody):
    """``POST /jobs``."""

    image_id: StrictStr = Field(min_length=1, max_length=100)
    recipe: dict[str, Any] | None = None
    preset: StrictStr | None = Field(default=None, min_length=1, max_length=100)


class JobBatchRequest(RequestBody):
    """``POST /jobs/batch``."""

    items: list[JobRequest] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


def validated_recipe(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``(canonical recipe dict, recipe_hash)``; ``InvalidRecipe`` also when it cannot be
    stored (DynamoDB items are at most 400 KB, numbers at most 38 digits)."""
    recipe = parse_recipe(raw)
    as_dict = recipe.model_dump(mode="json")
    size = len(recipe.canonical_json().encode("utf-8"))
    if size > MAX_RECIPE_BYTES:
        raise InvalidRecipe(
            f"recipe is {size} bytes; at most {MAX_RECIPE_BYTES} can be stored (use a smaller watermark)",
            details=[{"field": "watermark.image_b64", "message": "too large to store"}],
        )

    def walk(value: Any, path: str) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**38:
            raise InvalidRecipe(f"{path} is too large", details=[{"field": path, "message": "too large"}])
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else k)

    walk(as_dict, "")
    return as_dict, recipe.recipe_hash()


def resolve_recipe(backend: Backend, recipe: dict[str, Any] | None,
                   preset: str | None) -> tuple[dict[str, Any], str] | None:
    """The recipe a request asks for: ``recipe`` when given (``preset`` is then only its label),
    else the named preset's recipe (422 ``invalid_recipe`` on field ``preset`` when unknown), else
    ``None``. Both given: the explicit recipe runs, as it is (docs/api.md#presets)."""
    if recipe is not None:
        return validated_recipe(recipe)
    if preset is not None:
        found = backend.catalog.get(preset)
        return found.recipe, found.recipe_hash
    return None


def list_presets(backend: Backend) -> dict[str, Any]:
    """``GET /presets``: every preset with its recipe and hash, the default, the drop rules."""
    return backend.catalog.public()


def _download_name(job: dict[str, Any]) -> str:
    stem = PurePosixPath(job.get("filename") or "image").stem or "image"
    ext = PurePosixPath((job.get("result") or {}).get("output_key") or "").suffix
    return f"{stem}-{job.get('recipe_hash', '')[:8]}{ext}"


def present_job(backend: Backend, job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API returns it: with a fresh presigned ``result.download_url``."""
    job = dict(job)
    result = job.get("result")
    if job.get("status") == "succeeded" and isinstance(result, dict) and result.get("output_key"):
        result = dict(result)
        result["download_url"] = backend.storage.presign_download(
            backend.config.dest_bucket, result["output_key"], _download_name(job)
        )
        job["result"] = result
    return job


# --- routes ---------------------------------------------------------------------------------


def create_upload(backend: Backend, raw_body: str | bytes | None) -> dict[str, Any]:
    """``POST /uploads`` → presigned POST for a new image (and its job when a recipe is given)."""
    req: UploadRequest = parse_body(UploadRequest, raw_body)
    cfg = backend.config
    content_type = req.content_type.strip().lower()
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {req.content_type!r} is not accepted; use one of {sorted(ALLOWED_CONTENT_TYPES)}"
        )
    if req.size > cfg.max_upload_bytes:
        raise PayloadTooLarge(f"{req.size} bytes is over the upload cap of {cfg.max_upload_bytes} bytes")
    req.preset = backend.catalog.label(req.preset)
    resolved = resolve_recipe(backend, req.recipe, req.preset)
    image, job = new_image(backend, req.filename, content_type, resolved, req.preset, arrival="presigned",
                           announced_bytes=req.size)
    post = None
    try:
        write_new_image(backend, image, job)
        post = backend.storage.presign_upload(image["key"], content_type, req.size)  # no more than announced
    finally:
        if post is None:
            forget_image(backend, image["image_id"])
    return {
        "image_id": image["image_id"],
        "key": image["key"],
        "job_id": image.get("job_id"),
        "upload": {"url": post["url"], "fields": post["fields"]},
        "expires_in": cfg.presign_expires,
        "max_bytes": cfg.max_upload_bytes,
    }


def new_image(backend: Backend, filename: str, content_type: str,
              resolved: tuple[dict[str, Any], str] | None, preset: str | None, *, arrival: str,
              **extra: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A new image record (``pending_upload`` until its S3 event) under a fresh id, and its
    upload job when a recipe was resolved (the S3 event runs it)."""
    image_id = uuid.uuid4().hex
    recipe_dict, recipe_hash = resolved if resolved is not None else (None, None)
    image = {
        "image_id": image_id,
        "filename": safe_filename(filename),
        "key": upload_key(backend.config, image_id, filename),
        "content_type": content_type,
        **extra,
        "status": "pending_upload",
        "created_at": now_iso(),
        "recipe": recipe_dict,
        "recipe_hash": recipe_hash,
        "preset": preset,
        "arrival": arrival,
    }
    job = None
    if recipe_dict is not None and recipe_hash is not None:
        job = new_job(image, recipe_dict, recipe_hash, trigger="s3", preset=preset)
        image["job_id"] = job["job_id"]
    return image, job


def write_new_image(backend: Backend, image: dict[str, Any], job: dict[str, Any] | None) -> None:
    """Write a :func:`new_image` (and its job: fresh ids, one ``BatchWriteItem`` for both)."""
    if job is None:
        backend.records.put_image(image)
    else:
        backend.records.put_new_image_and_job(image, job)


def forget_image(backend: Backend, image_id: str) -> None:
    """``POST /uploads`` failed after (some of) its writes: remove them, so the client's retry
    (with a new image id) leaves no half-made image. Best effort: the request's own error is
    the one reported."""
    try:
        backend.records.delete_image_records(image_id)
    except Exception:
        logger.exception("could not remove the half-written records of image %s", image_id)


def _create_job_record(backend: Backend, image: dict[str, Any], recipe_dict: dict[str, Any],
                       recipe_hash: str, preset: str | None) -> tuple[dict[str, Any], str | None]:
    """Write the job (or find the existing one): what the API answers for it, and the queue
    message to send (``None`` when the job already left the queue)."""
    job = new_job(image, recipe_dict, recipe_hash, trigger="api", preset=preset)
    stored, created = backend.records.create_job(job)
    message = None
    if created or stored.get("status") == "queued":
        # A queued duplicate is re-sent: harmless (runs are idempotent) and heals a lost message.
        message = job_message(stored["job_id"], stored["image_id"], stored.get("source_key"),
                              stored.get("recipe"))
    accepted = {
        "job_id": stored["job_id"],
        "image_id": stored["image_id"],
        "recipe_hash": stored["recipe_hash"],
        "status": stored["status"],
        "created": created,
    }
    return accepted, message


def create_job(backend: Backend, raw_body: str | bytes | None) -> dict[str, Any]:
    """``POST /jobs`` → queue a job (the same id for a duplicate request)."""
    req: JobRequest = parse_body(JobRequest, raw_body)
    req.preset = backend.catalog.label(req.preset)
    recipe_dict, recipe_hash = resolve_recipe(backend, req.recipe, req.preset) or validated_recipe({})
    image = uploaded_image(backend, req.image_id)
    accepted, message = _create_job_record(backend, image, recipe_dict, recipe_hash, req.preset)
    if message is not None:
        backend.enqueue(message)
    return accepted


def create_jobs(backend: Backend, raw_body: str | bytes | None) -> dict[str, Any]:
    """``POST /jobs/batch`` → queue up to ``MAX_BATCH_JOBS`` jobs in one request.

    Each item is handled like ``POST /jobs`` and gets its own outcome, in request order: the
    accepted job, or ``{"image_id", "error": {"code", "message"}}`` with the error ``POST /jobs``
    would have answered (unknown image, not uploaded, invalid recipe). The images are read in
    one ``BatchGetItem``, a recipe repeated across items is validated once, and messages go out
    ten per ``SendMessageBatch`` as their jobs are written. A transient failure fails the whole
    request (503): retrying it is safe, jobs are idempotent and queued ones are re-sent."""
    req: JobBatchRequest = parse_body(JobBatchRequest, raw_body)
    images = backend.records.get_images(item.image_id for item in req.items)
    recipes: dict[str, tuple[dict[str, Any], str] | ImagePipeError] = {}
    outcomes: list[dict[str, Any]] = []
    messages: list[str] = []
    rejected = 0
    for item in req.items:
        item.preset = backend.catalog.label(item.preset)
        try:
            recipe_dict, recipe_hash = _validated_once(backend, recipes, item.recipe, item.preset)
            image = images.get(item.image_id)
            if image is None:
                raise NotFound(f"no image {item.image_id!r}")
            require_uploaded(backend, image)
            accepted, message = _create_job_record(backend, image, recipe_dict, recipe_hash, item.preset)
        except ImagePipeError as exc:
            if not exc.permanent:
                raise
            rejected += 1
            outcomes.append({"image_id": item.image_id, "error": exc.to_dict()})
            continue
        outcomes.append(accepted)
        if message is not None:
            messages.append(message)
        if len(messages) == 10:  # start the workers on the first jobs while the rest are written
            _send_all(backend, messages)
            messages = []
    _send_all(backend, messages)
    return {"items": outcomes, "accepted": len(outcomes) - rejected, "rejected": rejected}


def _validated_once(backend: Backend, cache: dict[str, tuple[dict[str, Any], str] | ImagePipeError],
                    raw: dict[str, Any] | None, preset: str | None) -> tuple[dict[str, Any], str]:
    """``resolve_recipe`` with one validation per distinct recipe (or preset) in a request."""
    key = json.dumps([raw, preset if raw is None else None], sort_keys=True, default=str)
    if key not in cache:
        try:
            cache[key] = resolve_recipe(backend, raw, preset) or validated_recipe({})
        except ImagePipeError as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, ImagePipeError):
        raise found
    return found


def _send_all(backend: Backend, messages: list[str]) -> None:
    if messages and backend.enqueue_many(messages):
        raise TransientError("the queue refused some job messages; retry the request "
                             "(jobs are idempotent: queued ones are sent again)")


def get_job(backend: Backend, job_id: str) -> dict[str, Any]:
    """``GET /jobs/{job_id}``."""
    job = backend.records.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return present_job(backend, job)


def list_jobs(backend: Backend, query: dict[str, str] | None) -> dict[str, Any]:
    """``GET /jobs`` newest first; with ``from``/``to``/``status``/``format``/``preset``/``arrival``
    only the matching jobs (``service/joblist.py``)."""
    limit, cursor = page_params(query)
    q = query or {}
    # History's filtered table (a date range, several filters or several ways in): service/joblist.py;
    # a single ``arrival`` alone keeps the plain list's filter
    if any(k in q for k in ("from", "to", *FILTERS)) and not (set(q) - {"limit", "cursor"} == {"arrival"}
                                                               and q["arrival"] in ARRIVALS):
        day_from, day_to, filters = parse_filters(q, default_days=MAX_DAYS)
        items, next_cursor = list_jobs_where(backend.records.table, limit, cursor, day_from, day_to, filters)
    else:
        items, next_cursor = backend.records.list_jobs(limit, cursor, arrival_param(query))
    return {"items": [present_job(backend, j) for j in items], "next_cursor": next_cursor}


def list_images(backend: Backend, query: dict[str, str] | None) -> dict[str, Any]:
    """``GET /images`` newest first."""
    limit, cursor = page_params(query)
    items, next_cursor = backend.records.list_images(limit, cursor, arrival_param(query))
    return {"items": items, "next_cursor": next_cursor}


def arrival_param(query: dict[str, str] | None) -> str | None:
    """``arrival`` from the query string: one of ``presigned``, ``direct``, ``drop`` (400 otherwise)."""
    value = (query or {}).get("arrival")
    if value is None:
        return None
    if value not in ARRIVALS:
        raise BadRequest(f"arrival must be one of {', '.join(ARRIVALS)}")
    return value


def get_image(backend: Backend, image_id: str) -> dict[str, Any]:
    """``GET /images/{image_id}``: facts, the original's download URL, every job."""
    image = image_or_404(backend, image_id)
    cfg = backend.config
    uploaded = image.get("status") == "uploaded"
    if not uploaded and backend.storage.head(cfg.source_bucket, image["key"]) is not None:
        uploaded = True  # the S3 event has not been processed yet
    image["uploaded"] = uploaded
    image["download_url"] = (
        backend.storage.presign_download(cfg.source_bucket, image["key"], image.get("filename"))
        if uploaded
        else None
    )
    image["jobs"] = [present_job(backend, j) for j in backend.records.jobs_for_image(image_id)]
    return image


def delete_image(backend: Backend, image_id: str) -> None:
    """``DELETE /images/{image_id}``: the original, its outputs, its records."""
    image_or_404(backend, image_id)
    cfg = backend.config
    backend.storage.delete_prefix(cfg.source_bucket, f"{cfg.upload_prefix}{image_id}/")
    backend.storage.delete_prefix(cfg.dest_bucket, f"{cfg.output_prefix}{image_id}/")
    backend.records.delete_image_records(image_id)


def _check(checks: dict[str, Any], name: str, fn: Any) -> Any:
    t = perf_counter()
    try:
        value = fn()
        checks[name] = {"ok": True, "ms": round((perf_counter() - t) * 1000, 2)}
        return value
    except Exception as exc:
        checks[name] = {"ok": False, "ms": round((perf_counter() - t) * 1000, 2),
                        "error": f"{type(exc).__name__}: {exc}"[:300]}
        return None


def _depth(backend: Backend, url: str) -> dict[str, int]:
    attrs = backend.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def health(backend: Backend) -> tuple[dict[str, Any], int]:
    """``GET /health``: each dependency checked; 200 when all pass, 503 otherwise."""
    cfg = backend.config
    checks: dict[str, Any] = {}
    _check(checks, "source_bucket", lambda: backend.storage.check_bucket(cfg.source_bucket))
    _check(checks, "dest_bucket", lambda: backend.storage.check_bucket(cfg.dest_bucket))
    _check(checks, "table", lambda: backend.records.table.get_item(Key={"pk": "HEALTH", "sk": "HEALTH"}))
    queue = _check(checks, "queue", lambda: _depth(backend, cfg.queue_url))
    dlq = _check(checks, "dlq", lambda: _depth(backend, cfg.dlq_url))
    if queue is not None:
        checks["queue"].update(queue)
    if dlq is not None:
        checks["dlq"].update(dlq)
    ok = all(c["ok"] for c in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "checks": checks,
        "queue_depth": (queue or {}).get("visible"),
        # every dead letter counts: the reconciler hides the ones it has read (in flight)
        "dlq_depth": None if dlq is None else dlq["visible"] + dlq["in_flight"],
    }
    return body, 200 if ok else 503
