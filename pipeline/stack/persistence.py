"""WSGI middleware that makes every acknowledged state change durable, and its replay.

Mutating requests are serialized by one lock: the request is applied by moto, its
response is buffered, the journal record (the request itself, and/or the SQS ledger
entries it caused) is written and fsync'd, the lock is released, and only then is the
response returned. So the journal order is the apply order, and nothing the emulator
acknowledged is missing from the journal. Failed requests (status >= 400) change
nothing and are not journaled (their SQS ledger entries, if any, are).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.stack import sqs_ledger
from pipeline.stack.classify import Kind, classify
from pipeline.stack.journal import Journal, Record

log = logging.getLogger("imagepipe.stack.journal")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: environ keys kept in a journal record (everything moto needs to rebuild the request)
_KEEP = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REQUEST_URI",
    "RAW_URI",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "wsgi.url_scheme",
)
_BLOCKED_MOTO_API = ("/moto-api/reset", "/moto-api/recorder", "/moto-api/state-manager")


def read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body once and make it re-readable (fixes up chunked bodies)."""
    cached = environ.get("imagepipe.body")
    if cached is not None:
        environ["wsgi.input"] = io.BytesIO(cached)
        return cached
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH") or ""
    if stream is None:
        body = b""
    elif length.isdigit():
        body = stream.read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
    else:
        body = b""
    environ["imagepipe.body"] = body
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def environ_record(environ: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a WSGI environ that is enough to replay the request."""
    from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY

    kept = {k: environ[k] for k in _KEEP if isinstance(environ.get(k), str)}
    kept.update({k: v for k, v in environ.items() if k.startswith("HTTP_") and isinstance(v, str)})
    names = environ.get(PRESERVED_HEADER_NAMES_ENVIRON_KEY)
    if isinstance(names, dict):
        kept[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
    return kept


class _Buffered:
    """Collects the WSGI response of the wrapped app."""

    def __init__(self) -> None:
        self.status = "500 INTERNAL SERVER ERROR"
        self.headers: list[tuple[str, str]] = []
        self.exc_info: Any = None

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status, self.headers, self.exc_info = status, list(headers), exc_info
        return lambda _data: None

    @property
    def code(self) -> int:
        return int(self.status.split(" ", 1)[0])


class JournalMiddleware:
    """Serializes and journals mutating requests in front of moto."""

    def __init__(self, app: WSGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal
        self.lock = threading.Lock()
        self._tls = threading.local()
        self.stats = {"journaled": 0, "reads": 0}
        sqs_ledger.install()

    # -- SQS ledger sink -------------------------------------------------------------------
    def ledger_sink(self, entry: dict[str, Any]) -> None:
        """Buffer an entry into the current serialized request, or write it at once."""
        buf = getattr(self._tls, "buffer", None)
        if buf is not None:
            buf.append(Record(entry))
        else:
            self.journal.append([Record(entry)])

    def activate(self) -> None:
        """Start recording SQS ledger entries (call after replay)."""
        sqs_ledger.set_sink(self.ledger_sink)

    # -- WSGI --------------------------------------------------------------------------------
    def _call_buffered(self, environ: dict[str, Any]) -> tuple[_Buffered, bytes]:
        """Run moto on one request and collect its whole response (status, headers, body)."""
        resp = _Buffered()
        chunks = self.app(environ, resp.start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return resp, data

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(_BLOCKED_MOTO_API):
            body = b'{"error": "disabled by the ImagePipe journal (state would not be durable)"}'
            start_response("403 FORBIDDEN", [("Content-Type", "application/json")])
            return [body]
        method = environ.get("REQUEST_METHOD", "GET").upper()
        body = b"" if method in ("GET", "HEAD") else read_body(environ)
        kind, service, _action = classify(environ, body)
        if kind in (Kind.READ, Kind.UNLOCKED):
            self.stats["reads"] += 1
            if service != "dynamodb":
                return self.app(environ, start_response)
            # moto applies an UpdateItem's actions one by one to the live item: an unlocked read
            # could see half of it (status set, result not yet). DynamoDB reads are item-atomic.
            with self.lock:
                resp, data = self._call_buffered(environ)
            start_response(resp.status, resp.headers, resp.exc_info)
            return [data]
        with self.lock:
            self._tls.buffer = []
            try:
                resp, data = self._call_buffered(environ)
            finally:
                entries: list[Record] = self._tls.buffer
                self._tls.buffer = None
            records = list(entries)
            if kind is Kind.REPLAY and resp.code < 400:
                environ["wsgi.input"] = io.BytesIO(body)
                records.insert(
                    0, Record({"t": "http", "env": environ_record(environ), "ts": time.time()}, body)
                )
            if records:
                self.journal.append(records)
                self.stats["journaled"] += 1
        start_response(resp.status, resp.headers, resp.exc_info)
        return [data]


def replay(app: WSGIApp, records: Iterable[Record]) -> dict[str, int]:
    """Re-apply journaled requests to a fresh moto, then restore the SQS ledger.

    The SQS ledger sink must be unset while this runs (it is by default).
    """
    ledger = sqs_ledger.Ledger()
    counts = {"http": 0, "http_failed": 0, "ledger": 0}
    for rec in records:
        header = rec.header
        if sqs_ledger.is_ledger_entry(header):
            ledger.feed(header)
            counts["ledger"] += 1
            continue
        if header.get("t") != "http":
            continue
        environ: dict[str, Any] = dict(header["env"])
        environ.update(
            {
                "wsgi.input": io.BytesIO(rec.body),
                "wsgi.errors": sys.stderr,
                "wsgi.version": (1, 0),
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "CONTENT_LENGTH": str(len(rec.body)),
            }
        )
        resp = _Buffered()
        chunks = app(environ, resp.start_response)
        b"".join(chunks)
        counts["http"] += 1
        if resp.code >= 400:
            counts["http_failed"] += 1
            log.warning(
                "replayed request failed: %s %s -> %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                resp.status,
            )
    restored = ledger.restore()
    counts.update(restored)
    return counts


def compacted(records: Iterable[Record]) -> list[Record]:
    """The same state with the SQS ledger folded to its live messages (HTTP records kept)."""
    ledger = sqs_ledger.Ledger()
    http: list[Record] = []
    for rec in records:
        if sqs_ledger.is_ledger_entry(rec.header):
            ledger.feed(rec.header)
        elif rec.header.get("t") == "http":
            http.append(rec)
    return http + [Record(e) for e in ledger.entries()]
