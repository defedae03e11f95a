"""A local API Gateway (HTTP API): HTTP requests -> payload v2.0 events -> the API handler.

The handler runs in this process (no IPC on the request path). Routes, stage and CORS
follow the ``HttpApi``/``ApiFunction`` definitions of the template (``ANY /{proxy+}`` on
the ``$default`` stage). Like API Gateway, a path no route matches gets
``404 {"message": "Not Found"}`` without invoking the function.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.stack.events import http_api_event
from pipeline.stack.runtime import LambdaContext

log = logging.getLogger("imagepipe.stack.apigw")

MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
#: the same limit on the whole event the function gets: a binary body arrives base64-encoded
#: (4 bytes for every 3) next to the headers and request context, so it is reached first
MAX_EVENT_BYTES = 6_291_456

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class Route:
    """An HTTP API route such as ``ANY /{proxy+}`` or ``GET /jobs/{id}``."""

    method: str
    path: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when the route matches, else ``None``."""
        if self.method not in ("ANY", method.upper()):
            return None
        if self.path == "$default":
            return {}
        pattern = "^"
        names: list[str] = []
        for part in re.split(r"(\{[^}]+\})", self.path):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1]
                greedy = name.endswith("+")
                name = name.rstrip("+")
                names.append(name)
                pattern += "(.+)" if greedy else "([^/]+)"
            else:
                pattern += re.escape(part)
        m = re.match(pattern + "$", path)
        if not m:
            return None
        return dict(zip(names, m.groups(), strict=True))


@dataclass
class ApiConfig:
    """What the gateway needs: routes, function identity, CORS."""

    routes: Sequence[Route] = (Route("ANY", "$default"),)
    function_name: str = "imagepipe-api"
    memory_mb: int = 512
    timeout_s: float = 29.0
    cors_origins: Sequence[str] = ()
    cors_methods: Sequence[str] = ("GET", "POST", "DELETE", "OPTIONS")
    cors_headers: Sequence[str] = ("content-type", "x-api-key")
    cors_max_age: int = 600
    max_body_bytes: int = MAX_BODY_BYTES
    max_event_bytes: int = MAX_EVENT_BYTES
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "errors": 0, "rejected": 0})


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(payload).encode()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"code": code, "message": message}})


def event_size(event: dict[str, Any]) -> int:
    """The bytes of ``event`` as JSON, as Lambda counts its request payload."""
    return len(json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def to_http(result: Any) -> tuple[int, dict[str, str], list[str], bytes]:
    """Map a handler's return value to (status, headers, cookies, body) like API Gateway."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        for k, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(k).lower()] = ",".join(str(v) for v in values)
        cookies = [str(c) for c in (result.get("cookies") or [])]
        raw = result.get("body")
        if raw is None:
            body = b""
        elif result.get("isBase64Encoded"):
            body = base64.b64decode(raw)
        else:
            body = str(raw).encode("utf-8")
        return status, headers, cookies, body
    if isinstance(result, str):
        return 200, {"content-type": "application/json"}, [], result.encode("utf-8")
    if result is None or isinstance(result, dict | list | int | float | bool):
        return 200, {"content-type": "application/json"}, [], json.dumps(result).encode("utf-8")
    raise TypeError(f"handler returned {type(result).__name__}, not a response")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server_version = "imagepipe-local-apigw"
    sys_version = ""
    server: ApiGatewayServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes | tuple[int, str, str]:
        """The request body, or the ``(status, code, message)`` rejecting it (the connection is
        then closed: the rest of the body is not read)."""
        limit = self.server.config.max_body_bytes
        too_large = (413, "payload_too_large", f"request body over {limit} bytes (the Lambda event limit); "
                     "upload large images with POST /uploads (a presigned S3 upload)")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                try:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    self.close_connection = True
                    return 400, "bad_request", "malformed chunked request body"
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > limit:
                    self.close_connection = True
                    return too_large
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit():  # "-1" would read until the client hangs up, "x" would kill the thread
            self.close_connection = True
            return 400, "bad_request", f"invalid Content-Length: {raw!r}"
        length = int(raw)
        if length > limit:
            self.close_connection = True
            return too_large
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.perf_counter()
        cfg = self.server.config
        cfg.stats["requests"] += 1
        request_id = uuid.uuid4().hex[:16]
        raw_path, _, raw_query = self.path.partition("?")
        body = self._read_body()
        origin = self.headers.get("Origin")
        cookies: list[str] = []
        if isinstance(body, tuple):
            cfg.stats["rejected"] += 1
            status, headers, payload = _error(*body)
        elif self.command == "OPTIONS" and origin and self.headers.get("Access-Control-Request-Method"):
            status, headers, payload = self._preflight(origin)
        else:
            status, headers, cookies, payload = self._invoke(raw_path, raw_query, body, request_id)
        if origin and origin in cfg.cors_origins:
            headers.setdefault("access-control-allow-origin", origin)
            headers.setdefault("vary", "Origin")
        self.send_response(status)
        for k, v in headers.items():
            if k not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        for c in cookies:
            self.send_header("set-cookie", c)
        self.send_header("apigw-requestid", request_id)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.server.record_latency((time.perf_counter() - started) * 1000)

    def _preflight(self, origin: str) -> tuple[int, dict[str, str], bytes]:
        cfg = self.server.config
        if origin not in cfg.cors_origins:
            return 204, {}, b""
        return (
            204,
            {
                "access-control-allow-origin": origin,
                "access-control-allow-methods": ",".join(cfg.cors_methods),
                "access-control-allow-headers": ",".join(cfg.cors_headers),
                "access-control-max-age": str(cfg.cors_max_age),
            },
            b"",
        )

    def _invoke(
        self, raw_path: str, raw_query: str, body: bytes, request_id: str
    ) -> tuple[int, dict[str, str], list[str], bytes]:
        cfg = self.server.config
        route, params = None, None
        for r in cfg.routes:
            params = r.match(self.command, raw_path)
            if params is not None:
                route = r
                break
        if route is None:
            s, h, b = _json(404, {"message": "Not Found"})
            return s, h, [], b
        event = http_api_event(
            self.command,
            raw_path,
            raw_query,
            self.headers.items(),
            body,
            self.client_address[0],
            route_key="$default" if route.path == "$default" else route.key,
            path_parameters=params or None,
            domain_name=self.headers.get("Host", "localhost"),
        )
        event["requestContext"]["requestId"] = request_id
        size = event_size(event)
        if size > cfg.max_event_bytes:  # AWS refuses this before the function runs
            cfg.stats["rejected"] += 1
            s, h, b = _error(413, "payload_too_large",
                             f"the Lambda event for this request would be {size} bytes, over Lambda's "
                             f"{cfg.max_event_bytes}-byte request limit (a binary body is base64-encoded); "
                             "upload large images with POST /uploads (a presigned S3 upload)")
            return s, h, [], b
        ctx = LambdaContext(
            request_id, cfg.function_name, cfg.memory_mb, time.time() * 1000 + cfg.timeout_s * 1000
        )
        try:
            # one request at a time, like one Lambda execution environment: handlers keep
            # per-request state in module globals (Powertools' resolver: event, route args)
            with self.server.invoke_lock:
                result = self.server.handler(event, ctx)
            return to_http(result)
        except Exception as exc:  # the function failed: 500, the gateway keeps serving
            cfg.stats["errors"] += 1
            log.exception("API handler failed on %s %s", self.command, raw_path)
            s, h, b = _error(500, "internal_error", f"the API function failed: {type(exc).__name__}")
            return s, h, [], b

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class ApiGatewayServer(ThreadingHTTPServer):
    """The local HTTP API endpoint."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, handler: Handler, config: ApiConfig | None = None) -> None:
        super().__init__((host, port), _RequestHandler)
        self.handler = handler
        self.config = config or ApiConfig()
        self.latencies_ms: list[float] = []
        self._lat_lock = threading.Lock()
        self.invoke_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record_latency(self, ms: float) -> None:
        """Keep the last 10k request latencies (gateway + handler time)."""
        with self._lat_lock:
            self.latencies_ms.append(ms)
            if len(self.latencies_ms) > 10_000:
                del self.latencies_ms[:5_000]

    def start(self) -> ApiGatewayServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="local-apigw", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)
