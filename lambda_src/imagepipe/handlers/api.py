"""API Lambda (HTTP API, payload 2.0): API-key check, route table, JSON errors.

Powertools' ``APIGatewayHttpResolver`` does the routing; the key check runs *before*
routing so that every path — known or not — answers 401 without a valid ``x-api-key``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from imagepipe.errors import (
    BadRequest,
    ImagePipeError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
)
from imagepipe.service import api, direct, exports, stats, studies, sweeps
from imagepipe.service.aws import get_clients
from imagepipe.service.backend import Backend
from imagepipe.service.config import get_config

logger = Logger()
BACKEND = Backend.create(get_config(), get_clients())
app = APIGatewayHttpResolver()


def _error_body(err: ImagePipeError) -> str:
    return json.dumps({"error": err.to_dict()}, default=str)


def _error(err: ImagePipeError) -> Response:
    return Response(status_code=err.http_status, content_type=content_types.APPLICATION_JSON,
                    body=_error_body(err))


def authorized(headers: dict[str, str] | None, expected: str) -> bool:
    """Constant-time comparison of the ``x-api-key`` header (any case) with the key."""
    if not expected:
        return False  # an unset key locks the API rather than opening it
    given = ""
    for name, value in (headers or {}).items():
        if name.lower() == "x-api-key":
            given = value or ""
            break
    try:
        return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate smuggled into the header
        return False


def _body() -> str | None:
    try:
        return app.current_event.decoded_body
    except (ValueError, UnicodeDecodeError) as exc:  # bad base64 or not UTF-8
        raise BadRequest(f"request body cannot be decoded: {type(exc).__name__}") from None


def _raw_body() -> bytes:
    """The request body as bytes (API Gateway base64-encodes binary bodies)."""
    event = app.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is not valid base64") from None
    return body.encode("utf-8", "surrogatepass")


def _content_type() -> str:
    return (app.current_event.headers or {}).get("content-type") or ""  # case-insensitive in Powertools v3


def _query() -> dict[str, str]:
    return app.current_event.query_string_parameters or {}


def _json_upload_body() -> str | None:
    """``POST /uploads``'s JSON body; image bytes sent here get a 400 pointing to ``POST /images``."""
    ct = _content_type().split(";", 1)[0].strip().lower()
    hint = ("POST /uploads expects a JSON body {filename, content_type, size} and answers with a "
            "presigned upload; to send the image bytes themselves use POST /images")
    if ct.startswith(("image/", "multipart/")):
        raise BadRequest(f"{hint} (got Content-Type {ct})")
    try:
        return _body()
    except BadRequest:
        raise BadRequest(f"{hint} (the body is not UTF-8 JSON)") from None


@app.post("/uploads")
def create_upload() -> tuple[dict[str, Any], int]:
    return api.create_upload(BACKEND, _json_upload_body()), 201


@app.post("/images")
def create_image() -> tuple[dict[str, Any], int]:
    return direct.create_direct_image(BACKEND, _raw_body(), _content_type(), _query()), 201


@app.get("/presets")
def list_presets() -> dict[str, Any]:
    return api.list_presets(BACKEND)


@app.post("/jobs")
def create_job() -> tuple[dict[str, Any], int]:
    return api.create_job(BACKEND, _body()), 202


@app.post("/jobs/batch")
def create_jobs() -> tuple[dict[str, Any], int]:
    return api.create_jobs(BACKEND, _body()), 202


@app.get("/jobs")
def list_jobs() -> dict[str, Any]:
    return api.list_jobs(BACKEND, _query())


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> dict[str, Any]:
    return api.get_job(BACKEND, job_id)


@app.get("/images")
def list_images() -> dict[str, Any]:
    return api.list_images(BACKEND, _query())


@app.get("/images/<image_id>")
def get_image(image_id: str) -> dict[str, Any]:
    return api.get_image(BACKEND, image_id)


@app.delete("/images/<image_id>")
def delete_image(image_id: str) -> Response:
    api.delete_image(BACKEND, image_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@app.post("/sweeps")
def create_sweep() -> tuple[dict[str, Any], int]:
    return sweeps.create_sweep(BACKEND, _body()), 202


@app.get("/sweeps")
def list_sweeps() -> dict[str, Any]:
    return sweeps.list_sweeps(BACKEND, _query())


@app.get("/sweeps/<sweep_id>")
def get_sweep(sweep_id: str) -> dict[str, Any]:
    return sweeps.get_sweep(BACKEND, sweep_id)


@app.get("/stats")
def get_stats() -> dict[str, Any]:
    return stats.get_stats(BACKEND, _query())


@app.post("/exports")
def create_export() -> tuple[dict[str, Any], int]:
    return exports.create_export(BACKEND, _body()), 202


@app.get("/exports/<export_id>")
def get_export(export_id: str) -> dict[str, Any]:
    return exports.get_export(BACKEND, export_id)


@app.post("/studies")
def create_study() -> tuple[dict[str, Any], int]:
    return studies.create_study(BACKEND, _body()), 202


@app.get("/studies")
def list_studies() -> dict[str, Any]:
    return studies.list_studies(BACKEND, _query())


@app.get("/studies/<study_id>")
def get_study(study_id: str) -> dict[str, Any]:
    return studies.get_study(BACKEND, study_id)


@app.get("/health")
def health() -> tuple[dict[str, Any], int]:
    return api.health(BACKEND)


def allowed_methods(path: str) -> list[str]:
    """The methods routed for ``path`` (empty when no route matches it at all)."""
    routes = app._static_routes + app._dynamic_routes  # Powertools keeps no public route table
    return sorted({r.method for r in routes if r.rule.match(path)})


@app.not_found
def not_found(_exc: NotFoundError) -> Response:
    event = app.current_event
    method, path = event.request_context.http.method, event.path
    allowed = allowed_methods(path)
    if allowed:
        resp = _error(MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allowed)}"))
        resp.headers["Allow"] = ", ".join(allowed)
        return resp
    return _error(NotFound(f"no route {method} {path}"))


@app.exception_handler(ImagePipeError)
def imagepipe_error(exc: ImagePipeError) -> Response:
    if exc.http_status >= 500:
        logger.error("request failed", extra={"code": exc.code, "error": exc.message})
    else:
        logger.info("request rejected", extra={"code": exc.code, "error": exc.message})
    return _error(exc)


@app.exception_handler(Exception)
def unexpected_error(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(InternalError(f"internal error ({type(exc).__name__}); see the API logs"))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    ctx = event.get("requestContext") or {}
    logger.set_correlation_id(ctx.get("requestId"))
    if not authorized(event.get("headers"), BACKEND.config.api_key):
        err = Unauthorized("missing or invalid x-api-key header")
        return {
            "statusCode": err.http_status,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": _error_body(err),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)
