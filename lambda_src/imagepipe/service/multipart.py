"""A strict ``multipart/form-data`` parser for ``POST /images`` (RFC 7578): the body is already
in memory (an API Gateway event), so it is split on its boundary, never streamed. Anything
malformed is a ``BadRequest`` naming what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagepipe.errors import BadRequest

MAX_PARTS = 16
MAX_HEADER_BYTES = 8 * 1024
_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))', re.IGNORECASE)
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


@dataclass(frozen=True)
class Part:
    """One form field: its ``name``, the ``filename`` it was sent with, its content type, bytes."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    def text(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"form field {self.name!r} is not UTF-8 text") from None


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a ``multipart/form-data`` content type."""
    m = _BOUNDARY.search(content_type or "")
    if not m:
        raise BadRequest("multipart/form-data needs a boundary parameter in its Content-Type")
    return m.group(1) or m.group(2)


def _headers(raw: bytes) -> dict[str, str]:
    if len(raw) > MAX_HEADER_BYTES:
        raise BadRequest("a form part's headers are too long")
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed form part header {line[:80]!r}")
        out[name.strip().lower()] = value.strip()
    return out


def _params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for m in _PARAM.finditer(value):
        quoted, bare = m.group(2), m.group(3)
        params[m.group(1).lower()] = (quoted.replace('\\"', '"') if quoted is not None else bare or "")
    return params


def parse_form(body: bytes, content_type: str) -> dict[str, Part]:
    """The fields of a ``multipart/form-data`` body by name (a repeated name is a ``BadRequest``)."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise BadRequest("malformed multipart/form-data body: no closing boundary")
    if len(chunks) - 2 > MAX_PARTS:
        raise BadRequest(f"at most {MAX_PARTS} form fields")
    parts: dict[str, Part] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise BadRequest("malformed multipart/form-data body: a part is not framed by CRLF")
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest("malformed multipart/form-data body: a part has no blank line after its headers")
        headers = _headers(head)
        disposition = headers.get("content-disposition", "")
        if not disposition.lower().startswith("form-data"):
            raise BadRequest("every form part needs Content-Disposition: form-data")
        params = _params(disposition)
        name = params.get("name")
        if not name:
            raise BadRequest("a form part has no name")
        if name in parts:
            raise BadRequest(f"form field {name!r} is given more than once")
        parts[name] = Part(name=name, data=data, filename=params.get("filename"),
                           content_type=headers.get("content-type"))
    return parts
