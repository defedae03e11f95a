"""pipeline.client against httpx.MockTransport: retries, typed errors, upload, wait."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from imagepipe.errors import (
    BadRequest,
    InvalidRecipe,
    NotFound,
    PayloadTooLarge,
    TransientError,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from pipeline.client import Client, sniff_content_type

API = "http://api.test"
S3 = "http://s3.test/source"


def client(handler: Any, **kw: Any) -> Client:
    kw.setdefault("backoff", 0.001)
    return Client(API, "k", transport=httpx.MockTransport(handler), **kw)


def err(status: int, code: str, message: str = "m", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


def test_retries_5xx_and_429_then_succeeds():
    calls: list[int] = []
    replies = [err(503, "transient_error"), httpx.Response(429, text="slow down"),
               httpx.Response(200, json={"items": [], "next_cursor": None})]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        assert request.headers["x-api-key"] == "k"
        return replies[len(calls) - 1]

    assert client(handler).list_images() == {"items": [], "next_cursor": None}
    assert len(calls) == 3


def test_gives_up_after_retries_with_typed_error():
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return err(503, "transient_error", "still down")

    with pytest.raises(TransientError) as info:
        client(handler, retries=2).get_job("x")
    assert len(calls) == 3 and info.value.message == "still down"
    assert info.value.status_code == 503


@pytest.mark.parametrize(("status", "code", "exc"), [
    (401, "unauthorized", Unauthorized), (404, "not_found", NotFound), (422, "invalid_recipe", InvalidRecipe),
    (400, "bad_request", BadRequest), (413, "payload_too_large", PayloadTooLarge),
])
def test_4xx_is_not_retried_and_is_typed(status, code, exc):
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return err(status, code, details=[{"field": "quality", "message": "bad"}])

    with pytest.raises(exc) as info:
        client(handler).process("img", {"quality": 0})
    assert len(calls) == 1 and info.value.code == code
    assert info.value.details == [{"field": "quality", "message": "bad"}]


def test_non_json_error_body_still_typed():
    with pytest.raises(BadRequest):
        client(lambda r: httpx.Response(400, text="<html>nope</html>")).get_image("i")


def test_connection_errors_are_retried_then_transport_error():
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError):
        client(handler, retries=2).health()
    assert len(calls) == 1, "health is not retried"
    calls.clear()
    with pytest.raises(TransportError):
        client(handler, retries=2).list_jobs()
    assert len(calls) == 3


def test_real_unreachable_port_is_transport_error():
    c = Client("http://127.0.0.1:9", "k", timeout=2, retries=1, backoff=0.001)
    with pytest.raises(TransportError):
        c.list_images()


def test_upload_presigns_then_posts_multipart_to_s3():
    seen: dict[str, Any] = {}
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            seen["presign"] = json.loads(request.content)
            return httpx.Response(201, json={"image_id": "i" * 32, "job_id": None, "expires_in": 900,
                                             "upload": {"url": S3, "fields": {"key": "uploads/i/a.png",
                                                                              "policy": "p"}}})
        assert "x-api-key" not in request.headers, "the API key must never go to S3"
        seen["s3"] = request.content
        seen["ctype"] = request.headers["content-type"]
        return httpx.Response(204)

    out = client(handler).upload(png, filename="a.png", recipe={"format": "webp"})
    assert seen["presign"] == {"filename": "a.png", "content_type": "image/png", "size": len(png),
                               "recipe": {"format": "webp"}}
    body = seen["s3"]
    assert seen["ctype"].startswith("multipart/form-data")
    assert body.index(b'name="key"') < body.index(b'name="policy"') < body.index(b'name="file"')
    assert png in body and out["image_id"] == "i" * 32 and out["bytes"] == len(png)


def test_upload_rejected_by_s3_is_typed():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            return httpx.Response(201, json={"image_id": "i", "job_id": None, "expires_in": 900,
                                             "upload": {"url": S3, "fields": {}}})
        xml = "<Error><Code>EntityTooLarge</Code><Message>too big</Message></Error>"
        return httpx.Response(400, text=xml)

    with pytest.raises(PayloadTooLarge, match="too big"):
        client(handler).upload(b"GIF89a....", filename="x.gif")


def test_wait_polls_until_terminal_and_times_out():
    states = iter(["queued", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"job_id": "j", "status": next(states)})

    assert client(handler).wait("j", timeout=5, interval=0.001)["status"] == "succeeded"

    def stuck(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"job_id": "j", "status": "running"})

    with pytest.raises(WaitTimeout):
        client(stuck).wait("j", timeout=0.05, interval=0.01)


def test_wait_checks_soon_then_backs_off_to_one_second(monkeypatch):
    """A small job is seen done soon after it finishes; a long one costs ~1 request a second."""
    pauses: list[float] = []
    monkeypatch.setattr("pipeline.client.time.sleep", pauses.append)
    states = iter(["queued"] + ["running"] * 9 + ["succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"job_id": "j", "status": next(states)})

    assert client(handler).wait("j", timeout=60)["status"] == "succeeded"
    assert pauses[:4] == pytest.approx([0.05, 0.075, 0.1125, 0.16875])
    assert max(pauses) == 1.0 and len(pauses) == 10


def test_wait_can_raise_the_jobs_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"job_id": "j", "status": "failed",
                                         "error": {"code": "corrupt_image", "message": "truncated"}})

    c = client(handler)
    assert c.wait("j")["error"]["code"] == "corrupt_image"
    with pytest.raises(Exception) as info:
        c.wait("j", raise_on_failure=True)
    assert info.value.code == "corrupt_image"


def test_iter_images_follows_cursors():
    pages = {None: {"items": [{"image_id": "a"}, {"image_id": "b"}], "next_cursor": "c1"},
             "c1": {"items": [{"image_id": "c"}], "next_cursor": None}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    assert [i["image_id"] for i in client(handler).iter_images(page_size=2)] == ["a", "b", "c"]


def test_download_from_job_dict_without_api_key():
    def handler(request: httpx.Request) -> httpx.Response:
        assert "x-api-key" not in request.headers
        return httpx.Response(200, content=b"BYTES")

    assert client(handler).download({"result": {"download_url": "http://s3.test/o?sig=1"}}) == b"BYTES"


@pytest.mark.parametrize(("data", "name", "expected"), [
    (b"\xff\xd8\xff\xe0rest", None, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\nrest", None, "image/png"),
    (b"GIF89a...", None, "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", None, "image/avif"),
    (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic", "x.bin", "image/heic"),
    (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1", None, "image/heif"),
    (b"\xff\x0a\xfa\x00", "photo", "image/jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ", None, "image/jxl"),
    (b"unknown", "x.png", "image/png"),
    (b"unknown", None, "application/octet-stream"),
])
def test_sniff_content_type(data, name, expected):
    assert sniff_content_type(data, name) == expected


def test_upload_from_path_uses_its_name_and_sniffs_the_type(tmp_path):
    path = tmp_path / "été photo.webp"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 10)
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            seen["presign"] = json.loads(request.content)
            return httpx.Response(201, json={"image_id": "i", "job_id": None, "expires_in": 900,
                                             "upload": {"url": S3, "fields": {}}})
        return httpx.Response(204)

    client(handler).upload(path)
    assert seen["presign"]["filename"] == "été photo.webp"
    assert seen["presign"]["content_type"] == "image/webp"
    assert seen["presign"]["size"] == path.stat().st_size


def test_a_post_that_creates_a_record_is_not_retried_after_a_5xx():
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return err(500, "internal_error", "half done?")

    with pytest.raises(Exception) as info:
        client(handler, retries=3).request("POST", "/uploads", json={"filename": "a.jpg"}, ok=(201,))
    assert info.value.code == "internal_error"
    assert calls == ["/uploads"], "a second POST /uploads would create a second image record"


def test_a_post_that_creates_a_record_is_retried_after_429_and_failed_connects():
    replies: list[Any] = [httpx.ConnectError("refused"), httpx.Response(429, text="slow down"),
                          httpx.Response(201, json={"image_id": "i"})]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        reply = replies[len(calls) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert client(handler, retries=3).request("POST", "/uploads", json={}, ok=(201,)) == {"image_id": "i"}
    assert len(calls) == 3


def test_post_jobs_is_idempotent_and_retried_after_a_5xx():
    replies = [err(503, "transient_error"), httpx.Response(202, json={"job_id": "j", "status": "queued"})]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return replies[len(calls) - 1]

    assert client(handler).process("i", {"format": "webp"})["job_id"] == "j"
    assert len(calls) == 2
