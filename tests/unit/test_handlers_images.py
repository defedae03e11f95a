"""POST /images, GET /presets and preset resolution through the API handler (payload-2.0
events, moto's in-process mock). End to end through the local stack: tests/integration/test_ways_in.py."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

import imagepipe.handlers.api as api_handler
from imagepipe.service.direct import DIRECT_MAX_BODY_BYTES
from tests.unit.service_env import mocked_backend
from tests.unit.test_handlers_api import call, event
from tests.unit.test_presets_drops import _form


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def raw_event(
    path: str, body: bytes, content_type: str, query: dict[str, str] | None = None
) -> dict[str, Any]:
    ev = event("POST", path, query=query)
    ev["headers"]["content-type"] = content_type
    ev["body"] = base64.b64encode(body).decode()
    ev["isBase64Encoded"] = True
    return ev


@pytest.fixture(scope="module")
def shared_backend():
    with mocked_backend(max_upload_bytes=25 * 1024 * 1024) as b:
        yield b


@pytest.fixture
def backend(shared_backend, monkeypatch):
    monkeypatch.setattr(api_handler, "BACKEND", shared_backend)
    return shared_backend


def _stored(backend, key: str) -> bytes:
    return backend.clients.s3.get_object(Bucket=backend.config.source_bucket, Key=key)["Body"].read()


def test_raw_image_body_with_query_parameters(backend):
    status, body = call(
        raw_event(
            "/images", PNG, "image/png", {"filename": "red dot.png", "recipe": json.dumps({"format": "webp"})}
        )
    )
    assert status == 201, body
    assert set(body) == {"image_id", "key", "job_id", "filename", "content_type", "bytes", "max_bytes"}
    assert body["key"] == f"uploads/{body['image_id']}/red dot.png" and body["bytes"] == len(PNG)
    assert body["max_bytes"] == DIRECT_MAX_BODY_BYTES == 4_706_304
    assert _stored(backend, body["key"]) == PNG
    status, image = call(event("GET", f"/images/{body['image_id']}"))
    assert image["arrival"] == "direct" and image["uploaded"] is True
    [job] = image["jobs"]
    assert (job["job_id"], job["arrival"], job["trigger"], job["status"]) == (
        body["job_id"],
        "direct",
        "s3",
        "queued",
    )


def test_multipart_with_a_preset_and_a_generic_part_type(backend):
    form, ct = _form(
        ("file", PNG, {"filename": "x.bin", "type": "application/octet-stream"}),
        ("preset", b"AVIF 2048", {}),
        ("filename", b"named.png", {}),
    )
    status, body = call(raw_event("/images", form, ct))
    assert status == 201, body
    assert body["content_type"] == "image/png" and body["filename"] == "named.png"
    job = call(event("GET", f"/jobs/{body['job_id']}"))[1]
    assert job["preset"] == "AVIF 2048"
    assert job["recipe_hash"] == backend.catalog.get("AVIF 2048").recipe_hash


def test_without_recipe_or_preset_no_job(backend):
    status, body = call(raw_event("/images", PNG, "image/png"))
    assert status == 201 and body["job_id"] is None and body["filename"] == "upload.png"


def test_over_the_cap_is_413_naming_post_uploads(backend):
    status, body = call(
        raw_event("/images", PNG + b"\0" * (DIRECT_MAX_BODY_BYTES - len(PNG) + 1), "image/png")
    )
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert (
        "POST /uploads" in body["error"]["message"] and str(DIRECT_MAX_BODY_BYTES) in body["error"]["message"]
    )


@pytest.mark.parametrize(
    ("body", "ct"),
    [
        (b"hello", "text/plain"),
        (b"not an image at all", "image/png"),
        (PNG, "image/bmp"),
        (b'{"filename": "a.png"}', "application/json"),
    ],
)
def test_not_an_image_is_415(backend, body, ct):
    status, resp = call(raw_event("/images", body, ct))
    assert status == 415 and resp["error"]["code"] == "unsupported_media_type"


def test_bytes_not_an_image_name_every_accepted_type(backend):
    """The 415 for bytes that are no image lists what is accepted, HEIC and JPEG XL included."""
    status, resp = call(raw_event("/images", b"not an image at all", "image/png"))
    assert status == 415
    message = resp["error"]["message"]
    for ct in ("image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/heic",
               "image/heif", "image/jxl"):
        assert ct in message, (ct, message)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"recipe": "{not json"}, "bad_request"),
        ({"colour": "red"}, "bad_request"),
        ({"preset": "nope"}, "invalid_recipe"),
        ({"recipe": json.dumps({"format": "bmp"})}, "invalid_recipe"),
    ],
)
def test_bad_options_are_typed_errors_and_write_nothing(backend, query, code):
    before = backend.clients.s3.list_objects_v2(Bucket=backend.config.source_bucket).get("KeyCount", 0)
    status, resp = call(raw_event("/images", PNG, "image/png", query))
    assert resp["error"]["code"] == code and status in (400, 422)
    assert (
        backend.clients.s3.list_objects_v2(Bucket=backend.config.source_bucket).get("KeyCount", 0) == before
    )


def test_a_binary_body_to_post_uploads_points_to_post_images(backend):
    for ct in ("image/png", "application/octet-stream"):
        status, resp = call(raw_event("/uploads", PNG, ct))
        assert status == 400 and "POST /images" in resp["error"]["message"], resp


def test_get_presets_lists_presets_and_drop_rules(backend):
    status, body = call(event("GET", "/presets"))
    assert status == 200
    names = [p["name"] for p in body["items"]]
    assert body["default"] in names and all(len(p["recipe_hash"]) == 16 for p in body["items"])
    assert body["drop_rules"] and body["drop_default"]["prefix"] is None


def test_preset_alone_resolves_and_recipe_wins_over_preset(backend):
    up = call(
        event(
            "POST",
            "/uploads",
            {"filename": "a.png", "content_type": "image/png", "size": 10, "preset": "Archive PNG"},
        )
    )[1]
    job = call(event("GET", f"/jobs/{up['job_id']}"))[1]
    assert (
        job["recipe_hash"] == backend.catalog.get("Archive PNG").recipe_hash and job["arrival"] == "presigned"
    )
    image_id = call(raw_event("/images", PNG, "image/png"))[1]["image_id"]
    status, by_name = call(event("POST", "/jobs", {"image_id": image_id, "preset": "AVIF 2048"}))
    assert status == 202 and by_name["recipe_hash"] == backend.catalog.get("AVIF 2048").recipe_hash
    status, both = call(
        event("POST", "/jobs", {"image_id": image_id, "preset": "AVIF 2048", "recipe": {"format": "png"}})
    )
    assert status == 202 and both["recipe_hash"] != by_name["recipe_hash"]
    assert call(event("GET", f"/jobs/{both['job_id']}"))[1]["recipe"]["format"] == "png"
    status, err = call(event("POST", "/jobs", {"image_id": image_id, "preset": "nope"}))
    assert status == 422 and err["error"]["details"][0]["field"] == "preset"
    status, batch = call(
        event(
            "POST",
            "/jobs/batch",
            {
                "items": [
                    {"image_id": image_id, "preset": "AVIF 2048"},
                    {"image_id": image_id, "preset": "nope"},
                ]
            },
        )
    )
    assert status == 202 and batch["accepted"] == 1 and batch["items"][0]["job_id"] == by_name["job_id"]
    assert batch["items"][1]["error"]["code"] == "invalid_recipe"


def test_list_filters_on_arrival(backend):
    direct_id = call(raw_event("/images", PNG, "image/png"))[1]["image_id"]
    items = call(event("GET", "/images", query={"arrival": "direct", "limit": "100"}))[1]["items"]
    assert direct_id in {i["image_id"] for i in items} and {i["arrival"] for i in items} == {"direct"}
    presigned = call(event("GET", "/images", query={"arrival": "presigned", "limit": "100"}))[1]["items"]
    assert direct_id not in {i["image_id"] for i in presigned}
    assert call(event("GET", "/jobs", query={"arrival": "bogus"}))[0] == 400
