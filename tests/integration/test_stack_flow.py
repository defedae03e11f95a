"""The local stack end to end, through real HTTP as a user would drive it.

presign (API) -> multipart POST to the emulator's S3 (policy enforced) -> S3 event or job
message on SQS -> processor worker -> output in the destination bucket -> poll the API ->
download -> decode. Both triggers; the POST policy as S3 enforces it; a failed handler.
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.unit.imagegen import photo_bytes

RECIPE = {"resize": {"width": 64, "height": 64, "fit": "inside"}, "format": "webp", "quality": 70}


def _api(stack: Any) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30)


def _upload(
    stack: Any,
    data: bytes,
    filename: str = "photo.jpg",
    ctype: str = "image/jpeg",
    recipe: dict[str, Any] | None = None,
) -> tuple[str, httpx.Response]:
    body: dict[str, Any] = {"filename": filename, "content_type": ctype, "size": len(data)}
    if recipe is not None:
        body["recipe"] = recipe
    with _api(stack) as api:
        r = api.post("/uploads", json=body)
    assert r.status_code == 201, r.text
    presign = r.json()
    post = httpx.post(
        presign["upload"]["url"],
        data=presign["upload"]["fields"],
        files={"file": (filename, data, ctype)},
        timeout=30,
    )
    return presign["image_id"], post


def _wait_job(stack: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with _api(stack) as api:
        while True:
            r = api.get(f"/jobs/{job_id}")
            if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed"):
                return r.json()
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} not finished in {timeout}s: {r.status_code} {r.text}")
            time.sleep(0.2)


def _jobs_of(stack: Any, image_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with _api(stack) as api:
        while True:
            r = api.get(f"/images/{image_id}")
            assert r.status_code == 200, r.text
            jobs = r.json().get("jobs") or []
            if jobs and all(j["status"] in ("succeeded", "failed") for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                pytest.fail(f"image {image_id} has no finished job in {timeout}s: {r.text}")
            time.sleep(0.2)


def test_job_trigger_end_to_end(local_stack):
    data = photo_bytes(320, 200, "jpeg", seed=11)
    image_id, post = _upload(local_stack, data)
    assert post.status_code in (200, 201, 204), post.text
    with _api(local_stack) as api:
        r = api.post("/jobs", json={"image_id": image_id, "recipe": RECIPE})
    assert r.status_code == 202, r.text
    job = _wait_job(local_stack, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    dl = httpx.get(job["result"]["download_url"], timeout=30)
    assert dl.status_code == 200
    img = Image.open(io.BytesIO(dl.content))
    assert img.format == "WEBP"
    assert max(img.size) == 64


def test_s3_event_trigger_end_to_end(local_stack):
    data = photo_bytes(300, 240, "png", seed=12)
    image_id, post = _upload(local_stack, data, "pic.png", "image/png", recipe=RECIPE)
    assert post.status_code in (200, 201, 204), post.text
    jobs = _jobs_of(local_stack, image_id)
    assert [j["status"] for j in jobs] == ["succeeded"], jobs
    job = _wait_job(local_stack, jobs[0]["job_id"])
    img = Image.open(io.BytesIO(httpx.get(job["result"]["download_url"], timeout=30).content))
    assert img.format == "WEBP" and max(img.size) == 64


def test_upload_larger_than_announced_cap_is_rejected_by_s3_policy(local_stack):
    """The policy's content-length-range is enforced by the emulator like S3 does."""
    max_bytes = int(local_stack.env["IMAGEPIPE_MAX_UPLOAD_BYTES"])
    with _api(local_stack) as api:
        r = api.post("/uploads", json={"filename": "x.jpg", "content_type": "image/jpeg", "size": 1000})
    presign = r.json()
    big = b"\xff\xd8" + b"\0" * (max_bytes + 1)
    post = httpx.post(
        presign["upload"]["url"],
        data=presign["upload"]["fields"],
        files={"file": ("x.jpg", big, "image/jpeg")},
        timeout=60,
    )
    assert post.status_code == 400
    assert b"<Code>EntityTooLarge</Code>" in post.content


def test_post_to_another_key_is_rejected(local_stack):
    with _api(local_stack) as api:
        presign = api.post(
            "/uploads", json={"filename": "y.jpg", "content_type": "image/jpeg", "size": 10}
        ).json()
    fields = dict(presign["upload"]["fields"])
    fields["key"] = "uploads/someone-else/y.jpg"
    post = httpx.post(presign["upload"]["url"], data=fields, files={"file": ("y.jpg", b"abc", "image/jpeg")})
    assert post.status_code == 403
    assert b"AccessDenied" in post.content


def test_gateway_maps_unknown_root_and_auth(local_stack):
    assert httpx.get(local_stack.api_url + "/images").status_code == 401
    r = httpx.get(local_stack.api_url + "/images", headers={"x-api-key": local_stack.api_key})
    assert r.status_code == 200 and "items" in r.json()


def test_health_reports_every_component(local_stack):
    h = local_stack.health()
    assert h["ok"], h
    assert h["buckets"]["ok"] and h["table"]["status"] == "ACTIVE"
    assert h["workers"]["alive"] == h["workers"]["size"] == 2
    assert {"visible", "in_flight"} <= set(h["queue"]) and {"visible", "in_flight"} <= set(h["dlq"])


def test_stack_env_does_not_leak_into_the_host_process(local_stack):
    import os

    assert os.environ.get("AWS_ENDPOINT_URL") != local_stack.endpoint_url
    assert os.environ.get("IMAGEPIPE_QUEUE_URL") != local_stack.env["IMAGEPIPE_QUEUE_URL"]
    assert local_stack.env["AWS_ENDPOINT_URL"] == local_stack.endpoint_url  # the functions do get it
