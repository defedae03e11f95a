"""TEST-ONLY fault injection for the emulator: make matching S3/DynamoDB/SQS requests fail.

Installed in front of everything else in the emulator process only when its environment
has ``IMAGEPIPE_TEST_FAULTS=1`` (never by default, never on AWS). Tests drive it over HTTP
on the emulator's own port:

- ``POST   /_imagepipe_test/faults``  add a rule, JSON ``{"service": "s3"|"dynamodb"|"sqs"|"any",
  "method": "GET", "path_contains": "...", "target_contains": "UpdateItem",
  "body_contains": "...", "times": 3, "status": 503, "code": "SlowDown"}`` (all matchers
  optional; ``times`` = how many matching requests fail, then the rule is spent);
- ``GET    /_imagepipe_test/faults``  the rules with their ``hits`` and ``remaining`` counts;
- ``DELETE /_imagepipe_test/faults``  remove every rule.

An injected failure answers like the real service (S3: XML ``<Error>``; DynamoDB/SQS: JSON
``__type``) and never reaches moto or the journal, so it changes no state.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipeline.stack.persistence import WSGIApp, read_body

ENV_FLAG = "IMAGEPIPE_TEST_FAULTS"
CONTROL_PATH = "/_imagepipe_test/faults"

_DEFAULTS = {
    "s3": (503, "SlowDown", "Please reduce your request rate. (injected)"),
    "dynamodb": (400, "ProvisionedThroughputExceededException",
                 "The level of configured provisioned throughput for the table was exceeded. (injected)"),
    "sqs": (503, "ServiceUnavailable", "Service is unavailable. (injected)"),
}


def service_of(environ: dict[str, Any]) -> str:
    """Which emulated service a request is for: ``dynamodb``, ``sqs`` or ``s3``."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS") or "Action=" in environ.get("QUERY_STRING", ""):
        return "sqs"
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "/sqs/aws4_request" in auth:
        return "sqs"
    if "/dynamodb/aws4_request" in auth:
        return "dynamodb"
    return "s3"


class FaultInjectionMiddleware:
    """WSGI middleware: fail matching requests ``times`` times (see the module doc)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.rules: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") == CONTROL_PATH:
            return self._control(environ, start_response)
        rule = self._match(environ)
        if rule is None:
            return self.app(environ, start_response)
        return self._fail(rule, environ, start_response)

    # -- control ---------------------------------------------------------------------------
    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        status = "200 OK"
        if method == "POST":
            try:
                rule = json.loads(read_body(environ) or b"{}")
                if not isinstance(rule, dict):
                    raise ValueError("a rule is a JSON object")
                service = str(rule.get("service", "any"))
                if service not in ("s3", "dynamodb", "sqs", "any"):
                    raise ValueError(f"unknown service {service!r}")
                rule["times"] = int(rule.get("times", 1))
            except (ValueError, TypeError) as exc:
                return _reply(start_response, "400 Bad Request", {"error": str(exc)})
            with self.lock:
                rule.update({"id": len(self.rules) + 1, "hits": 0, "remaining": rule["times"]})
                self.rules.append(rule)
            return _reply(start_response, "201 Created", rule)
        if method == "DELETE":
            with self.lock:
                self.rules.clear()
        with self.lock:
            body = {"rules": [dict(r) for r in self.rules]}
        return _reply(start_response, status, body)

    # -- matching ----------------------------------------------------------------------------
    def _match(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        with self.lock:
            live = [r for r in self.rules if r["remaining"] > 0]
        if not live:
            return None
        service = service_of(environ)
        body: bytes | None = None
        for rule in live:
            if rule.get("service", "any") not in ("any", service):
                continue
            if rule.get("method") and rule["method"].upper() != environ.get("REQUEST_METHOD", "").upper():
                continue
            if rule.get("path_contains") and rule["path_contains"] not in environ.get("PATH_INFO", ""):
                continue
            if rule.get("target_contains") and rule["target_contains"] not in environ.get(
                "HTTP_X_AMZ_TARGET", ""
            ):
                continue
            if rule.get("body_contains"):
                if body is None:
                    body = read_body(environ)
                if rule["body_contains"].encode() not in body:
                    continue
            with self.lock:
                if rule["remaining"] <= 0:
                    continue
                rule["remaining"] -= 1
                rule["hits"] += 1
            return rule
        return None

    def _fail(
        self, rule: dict[str, Any], environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        service = service_of(environ)
        status, code, message = _DEFAULTS[service]
        status = int(rule.get("status", status))
        code = str(rule.get("code", code))
        if environ.get("CONTENT_LENGTH", "").isdigit():
            read_body(environ)  # drain the request so the connection stays usable
        if service == "s3":
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{message}</Message><RequestId>injected</RequestId></Error>").encode()
            ctype = "application/xml"
        else:
            body = json.dumps({"__type": f"com.amazonaws.{service}#{code}", "message": message}).encode()
            ctype = "application/x-amz-json-1.0"
        start_response(f"{status} Injected", [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                              ("x-amzn-ErrorType", code)])
        return [body]


def _reply(start_response: Callable[..., Any], status: str, body: Any) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def wrap_if_enabled(app: WSGIApp, environ: Mapping[str, str]) -> WSGIApp:
    """``FaultInjectionMiddleware(app)`` when ``IMAGEPIPE_TEST_FAULTS=1``, else ``app`` unchanged."""
    return FaultInjectionMiddleware(app) if environ.get(ENV_FLAG) == "1" else app
