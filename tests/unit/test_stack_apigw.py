"""The local API Gateway with in-process handlers: event in, response out, failures contained."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipeline.stack.apigw import ApiConfig, ApiGatewayServer, Route

SEEN: list[dict[str, Any]] = []


def _handler(event: dict[str, Any], context: Any) -> Any:
    SEEN.append(event)
    path = event["rawPath"]
    if path == "/boom":
        raise RuntimeError("handler bug")
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "isBase64Encoded": True,
            "body": base64.b64encode(b"\x89PNG\x00\x01").decode(),
        }
    if path == "/plain":
        return {"ok": True}
    if path == "/bad":
        return object()
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Echo": "1"},
        "cookies": ["a=1; Path=/"],
        "body": json.dumps(
            {
                "method": event["requestContext"]["http"]["method"],
                "path": path,
                "query": event.get("queryStringParameters"),
                "body": event.get("body"),
                "b64": event["isBase64Encoded"],
                "remaining": context.get_remaining_time_in_millis(),
                "request_id": context.aws_request_id,
            }
        ),
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[ApiGatewayServer]:
    cfg = ApiConfig(
        routes=[Route("ANY", "/{proxy+}")], max_body_bytes=1024, cors_origins=["http://localhost:8501"]
    )
    gw = ApiGatewayServer("127.0.0.1", 0, _handler, cfg).start()
    yield gw
    gw.stop()


def test_request_becomes_event_and_response_maps_back(gateway):
    r = httpx.post(gateway.url + "/jobs?x=1&x=2", json={"a": 1})
    assert r.status_code == 201
    assert r.headers["x-echo"] == "1" and r.headers["set-cookie"] == "a=1; Path=/"
    assert "apigw-requestid" in r.headers
    body = r.json()
    assert body["method"] == "POST" and body["path"] == "/jobs" and body["query"] == {"x": "1,2"}
    assert json.loads(body["body"]) == {"a": 1} and body["b64"] is False
    assert 0 < body["remaining"] <= 29_000
    event = SEEN[-1]
    assert event["routeKey"] == "ANY /{proxy+}" and event["pathParameters"] == {"proxy": "jobs"}
    assert event["requestContext"]["requestId"] == body["request_id"] == r.headers["apigw-requestid"]


def test_binary_request_and_response(gateway):
    r = httpx.put(
        gateway.url + "/binary", content=b"\x00\xff", headers={"content-type": "application/octet-stream"}
    )
    assert r.status_code == 200 and r.content == b"\x89PNG\x00\x01"
    assert SEEN[-1]["isBase64Encoded"] is True and base64.b64decode(SEEN[-1]["body"]) == b"\x00\xff"


def test_plain_dict_is_200_json(gateway):
    r = httpx.get(gateway.url + "/plain")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_handler_exception_is_500_json_and_the_server_keeps_serving(gateway):
    r = httpx.get(gateway.url + "/boom")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    r = httpx.get(gateway.url + "/bad")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert httpx.get(gateway.url + "/plain").status_code == 200


def test_body_over_the_cap_is_413(gateway):
    r = httpx.post(gateway.url + "/jobs", content=b"x" * 2048)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert httpx.get(gateway.url + "/plain").status_code == 200


def test_unrouted_root_is_api_gateway_404(gateway):
    n = len(SEEN)
    r = httpx.get(gateway.url + "/")
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
    assert len(SEEN) == n  # the function was not invoked


def test_cors_preflight_and_origin_header(gateway):
    r = httpx.options(
        gateway.url + "/jobs",
        headers={"Origin": "http://localhost:8501", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "http://localhost:8501"
    assert "x-api-key" in r.headers["access-control-allow-headers"]
    r = httpx.get(gateway.url + "/plain", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_concurrent_requests_on_keep_alive_connections(gateway):
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=gateway.url) as c:
                for _ in range(20):
                    assert c.get("/plain").status_code == 200
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("length", ["-1", "abc"])
def test_invalid_content_length_is_400_not_a_hung_or_dropped_connection(gateway, length):
    import socket

    host, port = gateway.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)  # before the fix: a timeout (-1) or an empty read (abc)
            assert chunk, "connection closed without a response"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert httpx.get(gateway.url + "/plain").status_code == 200


def test_an_event_over_lambdas_limit_is_413_before_the_function(gateway):
    """A binary body is base64-encoded into the event: 4/3 of its size plus the request context
    must fit Lambda's request limit, so the event can be over it while the raw body is under."""
    n = len(SEEN)
    cfg = gateway.config
    saved = cfg.max_event_bytes
    cfg.max_event_bytes = 1800
    try:
        ok = httpx.post(gateway.url + "/jobs", content=b"x" * 900, headers={"content-type": "text/plain"})
        big = httpx.post(gateway.url + "/jobs", content=b"\x00" * 900,
                         headers={"content-type": "application/octet-stream"})
    finally:
        cfg.max_event_bytes = saved
    assert ok.status_code != 413
    assert big.status_code == 413 and "POST /uploads" in big.json()["error"]["message"]
    assert len(SEEN) == n + 1  # only the first request reached the function
