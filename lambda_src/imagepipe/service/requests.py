"""What every HTTP API operation shares for its input: the strict JSON body base model, its
parser (a ``BadRequest`` naming each bad field) and the pagination parameters. The API and
the compression lab's routes (``service/sweeps.py``) both build on these."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from imagepipe.errors import BadRequest
from imagepipe.service.records import MAX_PAGE

DEFAULT_PAGE = 20


class RequestBody(BaseModel):
    """A JSON request body: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


def parse_body(model: type[RequestBody], raw: str | bytes | None) -> Any:
    """Decode a JSON body into ``model``; ``BadRequest`` naming each bad field."""
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        raise BadRequest("request body is required (a JSON object)")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("request body contains invalid unicode (a lone surrogate escape)") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        fields = ", ".join(d["field"] for d in details)
        raise BadRequest(f"invalid request body: {fields}", details=details) from None


def page_params(query: dict[str, str] | None) -> tuple[int, str | None]:
    """``limit`` (1–100, default 20) and ``cursor`` from the query string."""
    query = query or {}
    raw = query.get("limit")
    limit = DEFAULT_PAGE
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise BadRequest(f"limit must be an integer between 1 and {MAX_PAGE}")
        limit = int(raw)
    cursor = query.get("cursor") or None
    return limit, cursor
