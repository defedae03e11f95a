"""The API handler with payload-2.0 events, on moto's in-process mock."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import imagepipe.handlers.api as api_handler
from imagepipe.service.backend import Backend
from tests.unit.service_env import API_KEY, make_config, mocked_backend

ROUTES = [
    ("POST", "/uploads"),
    ("POST", "/jobs"),
    ("POST", "/jobs/batch"),
    ("GET", "/jobs"),
    ("GET", "/jobs/" + "a" * 32 + "-" + "b" * 16),
    ("GET", "/images"),
    ("GET", "/images/" + "a" * 32),
    ("DELETE", "/images/" + "a" * 32),
    ("GET", "/health"),
    ("GET", "/no/such/route"),
]


def event(method: str, path: str, body: Any = None, *, key: str | None = API_KEY,
          query: dict[str, str] | None = None, b64: bool = False) -> dict[str, Any]:
    headers = {"content-type": "application/json", "host": "localhost"}
    if key is not None:
        headers["x-api-key"] = key
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    ev: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "pytest"},
                           "requestId": uuid.uuid4().hex, "stage": "$default", "routeKey": "$default"},
        "isBase64Encoded": b64,
    }
    if query:
        ev["queryStringParameters"] = query
    if raw is not None:
        ev["body"] = base64.b64encode(raw.encode()).decode() if b64 else raw
    return ev


def call(ev: dict[str, Any]) -> tuple[int, Any]:
    resp = api_handler.handler(ev, None)
    body = resp.get("body") or ""
    return resp["statusCode"], (json.loads(body) if body else None)


@pytest.fixture(scope="module")
def shared_backend():
    """One mocked account for the module (tests use fresh ids, so they do not interfere)."""
    with mocked_backend() as b:
        yield b


@pytest.fixture
def backend(shared_backend, monkeypatch):
    monkeypatch.setattr(api_handler, "BACKEND", shared_backend)
    return shared_backend


def upload(body: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = body or {"filename": "cat.png", "content_type": "image/png", "size": 1000}
    return call(event("POST", "/uploads", body))


@pytest.fixture
def offline(monkeypatch):
    """A backend whose AWS clients explode: the key check must answer before any AWS call."""
    monkeypatch.setattr(api_handler, "BACKEND", Backend(make_config(), None, None, None, None))


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x", API_KEY.upper(), "\udcff" + API_KEY,
                                 "ключ"])
def test_every_route_needs_the_key(offline, method, path, key):
    status, body = call(event(method, path, {"x": 1}, key=key))
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


def test_header_name_is_case_insensitive(backend):
    ev = event("GET", "/images", key=None)
    ev["headers"]["X-Api-Key"] = API_KEY
    assert call(ev)[0] == 200


def test_unset_server_key_locks_the_api(backend, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(api_handler, "BACKEND", replace(backend, config=replace(backend.config, api_key="")))
    assert call(event("GET", "/health", key=""))[0] == 401


def test_upload_presign(backend):
    status, body = upload()
    assert status == 201
    assert set(body) >= {"image_id", "upload", "expires_in"}
    assert body["upload"]["fields"]["key"] == f"uploads/{body['image_id']}/cat.png"
    assert body["expires_in"] <= 900 and body["job_id"] is None
    status, image = call(event("GET", f"/images/{body['image_id']}"))
    assert status == 200 and image["status"] == "pending_upload" and image["download_url"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "bad_request"),
        ("[]", 400, "bad_request"),
        ({}, 400, "bad_request"),
        ({"filename": "a.png", "content_type": "image/png"}, 400, "bad_request"),
        ({"filename": "a.png", "content_type": "image/png", "size": "12"}, 400, "bad_request"),
        ({"filename": "a.png", "content_type": "image/png", "size": 0}, 400, "bad_request"),
        ({"filename": "a.png", "content_type": "image/png", "size": 10, "extra": 1}, 400, "bad_request"),
        ({"filename": "a.png", "content_type": "image/png", "size": 10_000_000}, 413, "payload_too_large"),
        ({"filename": "a.pdf", "content_type": "application/pdf", "size": 10}, 415, "unsupported_media_type"),
        ({"filename": "a.png", "content_type": "image/png", "size": 10, "recipe": {"quality": 500}}, 422,
         "invalid_recipe"),
    ],
)
def test_upload_validation(backend, body, status, code):
    got_status, got = call(event("POST", "/uploads", body))
    assert (got_status, got["error"]["code"]) == (status, code)
    assert got["error"]["message"]


def test_unstorable_bodies_are_rejected_cleanly(backend):
    base = {"filename": "a.png", "content_type": "image/png", "size": 10}
    status, body = call(event("POST", "/uploads", '{"filename": "a\\ud800.png", "content_type": "image/png", '
                                                  '"size": 10}'))
    assert (status, body["error"]["code"]) == (400, "bad_request")
    huge = {"watermark": {"image_b64": "A" * 300_000}}
    assert call(event("POST", "/uploads", {**base, "recipe": huge}))[0] == 422
    many_digits = {"quality": "auto", "max_bytes": 12345678901234567890123456789012345678901}
    assert call(event("POST", "/uploads", {**base, "recipe": many_digits}))[0] == 422


def test_invalid_recipe_names_the_field(backend):
    _, body = upload({"filename": "a.png", "content_type": "image/png", "size": 10,
                      "recipe": {"resize": {"width": -5}, "format": "bmp"}})
    fields = {d["field"] for d in body["error"]["details"]}
    assert "format" in fields and any(f.startswith("resize") for f in fields)


@pytest.mark.parametrize("raw", ["!!!not base64!!!", base64.b64encode(b"\xff\xfe\x00binary").decode()])
def test_undecodable_base64_body_is_400(backend, raw):
    ev = event("POST", "/uploads", None)
    ev["body"], ev["isBase64Encoded"] = raw, True
    status, body = call(ev)
    assert (status, body["error"]["code"]) == (400, "bad_request")


def test_base64_body_is_decoded(backend):
    ev = event("POST", "/uploads", {"filename": "a.gif", "content_type": "image/gif", "size": 5}, b64=True)
    assert call(ev)[0] == 201


def test_upload_with_recipe_creates_queued_job(backend):
    status, body = upload({"filename": "a.png", "content_type": "image/png", "size": 10,
                           "recipe": {"format": "webp"}, "preset": "web"})
    assert status == 201 and body["job_id"].startswith(body["image_id"] + "-")
    status, job = call(event("GET", f"/jobs/{body['job_id']}"))
    assert status == 200 and job["status"] == "queued" and job["preset"] == "web"
    assert job["recipe"]["format"] == "webp"


def test_upload_with_recipe_leaves_nothing_half_written_when_a_write_fails(backend, monkeypatch):
    """The image and its job are written together; when that fails half way the half that was
    written is removed and the client gets the (retryable) error."""
    from imagepipe.errors import TransientError

    written: list[str] = []
    real_put = backend.records.put_image

    def half_written(image, job):
        written.append(image["image_id"])
        real_put(image)
        raise TransientError("DynamoDB is having a moment")

    monkeypatch.setattr(backend.records, "put_new_image_and_job", half_written)
    status, body = upload({"filename": "a.png", "content_type": "image/png", "size": 10, "recipe": {}})
    assert (status, body["error"]["code"]) == (503, "transient_error")
    assert len(written) == 1 and backend.records.get_image(written[0]) is None


def test_upload_leaves_no_records_when_presigning_fails(backend, monkeypatch):
    def broken_presign(*args, **kwargs):
        raise RuntimeError("signing failed")

    created: list[str] = []
    real_write = backend.records.put_new_image_and_job

    def write(image, job):
        created.append(image["image_id"])
        real_write(image, job)

    monkeypatch.setattr(backend.records, "put_new_image_and_job", write)
    monkeypatch.setattr(type(backend.storage), "presign_upload", broken_presign)
    status, body = upload({"filename": "a.png", "content_type": "image/png", "size": 10, "recipe": {}})
    assert (status, body["error"]["code"]) == (500, "internal_error")
    assert len(created) == 1 and backend.records.get_image(created[0]) is None
    assert backend.records.jobs_for_image(created[0]) == []


def job_recipe(job_id: str) -> dict:
    """The stored (canonical) recipe of a job, as ``GET /jobs/{id}`` returns it."""
    status, job = call(event("GET", f"/jobs/{job_id}"))
    assert status == 200
    return job["recipe"]


def test_jobs_flow_and_errors(backend):
    _, up = upload()
    image_id = up["image_id"]
    # 404 unknown image, 409 not uploaded yet, 422 bad recipe, 400 bad body
    assert call(event("POST", "/jobs", {"image_id": uuid.uuid4().hex, "recipe": {}}))[0] == 404
    status, body = call(event("POST", "/jobs", {"image_id": image_id, "recipe": {}}))
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert call(event("POST", "/jobs", {"image_id": image_id, "recipe": {"quality": 0}}))[0] == 422
    assert call(event("POST", "/jobs", {"recipe": {}}))[0] == 400
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=up["upload"]["fields"]["key"],
                                  Body=b"PNGDATA")
    status, job = call(event("POST", "/jobs", {"image_id": image_id, "recipe": {"format": "png"}}))
    assert status == 202 and job["status"] == "queued" and job["created"] is True
    status, again = call(event("POST", "/jobs", {"image_id": image_id, "recipe": {"format": "png"}}))
    assert status == 202 and again["job_id"] == job["job_id"] and again["created"] is False
    msgs = backend.clients.sqs.receive_message(QueueUrl=backend.config.queue_url, MaxNumberOfMessages=10)
    bodies = [json.loads(m["Body"]) for m in msgs.get("Messages", [])]
    mine = [b for b in bodies if b.get("image_id") == image_id]
    key = up["upload"]["fields"]["key"]
    hints = {"source_key": key, "recipe": job_recipe(job["job_id"])}
    assert mine and all(b == {"type": "job", "job_id": job["job_id"], "image_id": image_id, **hints}
                        for b in mine)
    status, listed = call(event("GET", "/jobs", query={"limit": "5"}))
    assert status == 200 and listed["items"][0]["job_id"] == job["job_id"]
    status, image = call(event("GET", f"/images/{image_id}"))
    assert image["uploaded"] is True and image["download_url"].startswith("http")
    assert [j["job_id"] for j in image["jobs"]] == [job["job_id"]]


def _drain_job_messages(backend: Backend) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        msgs = backend.clients.sqs.receive_message(QueueUrl=backend.config.queue_url,
                                                   MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        out += [json.loads(m["Body"]) for m in msgs]


def test_job_batch_gives_each_item_the_outcome_post_jobs_would(backend):
    _drain_job_messages(backend)
    landed = []
    for name in ("a.png", "b.png", "c.png"):
        _, up = upload({"filename": name, "content_type": "image/png", "size": 1000})
        backend.clients.s3.put_object(Bucket=backend.config.source_bucket,
                                      Key=up["upload"]["fields"]["key"], Body=b"PNGDATA")
        landed.append(up["image_id"])
    _, pending = upload()  # presigned, never uploaded
    items = [{"image_id": landed[0], "recipe": {"format": "webp"}},
             {"image_id": uuid.uuid4().hex, "recipe": {}},  # unknown image
             {"image_id": landed[1], "recipe": {"format": "webp"}, "preset": "web"},
             {"image_id": pending["image_id"], "recipe": {}},  # not uploaded yet
             {"image_id": landed[2], "recipe": {"quality": 0}},  # invalid recipe
             {"image_id": landed[0], "recipe": {"format": "webp"}},  # a duplicate of item 0
             {"image_id": "not-an-id", "recipe": {}}]
    status, body = call(event("POST", "/jobs/batch", {"items": items}))
    assert status == 202 and (body["accepted"], body["rejected"]) == (3, 4)
    out = body["items"]
    assert [o.get("error", {}).get("code") for o in out] == [
        None, "not_found", None, "conflict", "invalid_recipe", None, "not_found"]
    assert [o["image_id"] for o in out] == [i["image_id"] for i in items]
    assert out[0]["status"] == "queued" and out[0]["created"] is True
    assert out[5]["job_id"] == out[0]["job_id"] and out[5]["created"] is False
    # the same job and message as POST /jobs: one message per accepted item (the duplicate is
    # re-sent while queued, as POST /jobs does), with the key and recipe hints
    single_status, single = call(event("POST", "/jobs", {"image_id": landed[1],
                                                          "recipe": {"format": "webp"}}))
    assert single_status == 202 and single["job_id"] == out[2]["job_id"] and single["created"] is False
    sent = _drain_job_messages(backend)
    assert sorted(m["job_id"] for m in sent) == sorted([out[0]["job_id"], out[2]["job_id"], out[0]["job_id"],
                                                       out[2]["job_id"]])
    assert all(m["recipe"] == job_recipe(m["job_id"]) and m["source_key"] for m in sent)
    status, job = call(event("GET", f"/jobs/{out[2]['job_id']}"))
    assert job["preset"] == "web" and job["trigger"] == "api"


@pytest.mark.parametrize("body", [{}, {"items": []}, {"items": [{"recipe": {}}]},
                                  {"items": [{"image_id": "a" * 32}] * 101}, {"items": {}}])
def test_job_batch_body_errors_are_400(backend, body):
    status, resp = call(event("POST", "/jobs/batch", body))
    assert (status, resp["error"]["code"]) == (400, "bad_request")


@pytest.mark.parametrize("path", ["/jobs/nope", "/jobs/" + "a" * 32 + "-" + "b" * 16, "/images/nope",
                                  "/images/" + "c" * 32])
def test_unknown_ids_are_404(backend, path):
    status, body = call(event("GET", path))
    assert status == 404 and body["error"]["code"] == "not_found"


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"cursor": "garbage"}])
def test_bad_paging_is_400(backend, query):
    assert call(event("GET", "/images", query=query))[0] == 400


def test_images_paging(backend):
    ids = [upload()[1]["image_id"] for _ in range(3)]
    _, page1 = call(event("GET", "/images", query={"limit": "2"}))
    _, page2 = call(event("GET", "/images", query={"limit": "2", "cursor": page1["next_cursor"]}))
    assert [i["image_id"] for i in page1["items"] + page2["items"]][:3] == ids[::-1]


def test_delete_image(backend):
    _, up = upload()
    key = up["upload"]["fields"]["key"]
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=b"x")
    out = f"outputs/{up['image_id']}/0123456789abcdef.webp"
    backend.clients.s3.put_object(Bucket=backend.config.dest_bucket, Key=out, Body=b"y")
    resp = api_handler.handler(event("DELETE", f"/images/{up['image_id']}"), None)
    assert resp["statusCode"] == 204 and not resp.get("body")
    assert backend.storage.head(backend.config.source_bucket, key) is None
    assert backend.storage.head(backend.config.dest_bucket, out) is None
    assert call(event("GET", f"/images/{up['image_id']}"))[0] == 404
    assert call(event("DELETE", f"/images/{up['image_id']}"))[0] == 404


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/uploads", "POST"), ("DELETE", "/jobs", "GET, POST"),
    ("POST", "/images/" + "a" * 32, "DELETE, GET"), ("PATCH", "/health", "GET"),
])
def test_wrong_method_is_405_with_allow(backend, method, path, allow):
    resp = api_handler.handler(event(method, path, {}), None)
    assert resp["statusCode"] == 405
    headers = {k.lower(): v for k, v in resp["headers"].items()}
    assert headers["allow"] == allow
    assert json.loads(resp["body"])["error"]["code"] == "method_not_allowed"


def test_health(backend):
    status, body = call(event("GET", "/health"))
    assert status == 200 and body["status"] == "ok"
    assert set(body["checks"]) == {"source_bucket", "dest_bucket", "table", "queue", "dlq"}
    assert isinstance(body["queue_depth"], int) and body["dlq_depth"] == 0


def test_health_degraded(backend, monkeypatch):
    real = backend.clients.s3.head_bucket

    def head_bucket(Bucket):  # noqa: N803 (boto3's parameter name)
        if Bucket == backend.config.dest_bucket:
            return real(Bucket="no-such-bucket-here")
        return real(Bucket=Bucket)

    monkeypatch.setattr(backend.clients.s3, "head_bucket", head_bucket)
    status, body = call(event("GET", "/health"))
    assert status == 503 and body["status"] == "degraded" and body["checks"]["dest_bucket"]["ok"] is False


def test_unexpected_error_is_internal_error_json(backend, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api_handler.api, "list_images", boom)
    status, body = call(event("GET", "/images"))
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "secret detail" not in body["error"]["message"]


@pytest.mark.parametrize(("name", "status"), [
    ("api_post_uploads.json", 201), ("api_post_jobs.json", 404), ("api_get_job.json", 404),
    ("api_list_images.json", 200), ("api_health_no_key.json", 401),
])
def test_sample_events(backend, name, status):
    ev = json.loads((Path(__file__).resolve().parents[2] / "events" / name).read_text())
    if "x-api-key" in ev["headers"]:
        ev["headers"]["x-api-key"] = API_KEY
    assert call(ev)[0] == status
