"""Helpers for the reliability suite: drive a running stack over real HTTP and boto3.

Every test here goes through a real stack: the session ``local_stack`` (tests/conftest.py)
or a ``python -m pipeline serve`` subprocess from ``serve_process``. A "stack" below is any
object with ``api_url``, ``api_key`` and ``endpoint_url`` (both kinds have them).
Figures the tests measure are appended to ``test-artifacts/reliability.jsonl`` (see
docs/reliability.md), never asserted on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig

from pipeline import PROJECT_ROOT
from pipeline.stack.provision import clients

SOURCE_BUCKET = "imagepipe-source"
DEST_BUCKET = "imagepipe-destination"
TERMINAL = ("succeeded", "failed")
FIGURES = Path(PROJECT_ROOT) / "test-artifacts" / "reliability.jsonl"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything here needs a running stack: mark it ``integration`` too."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Append one JSON line of measured figures (for docs/reliability.md) and print it."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures},
                      default=str)
    with FIGURES.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    print(f"\nFIGURES {line}")


def api(stack: Any, key: str | None = None, timeout: float = 30) -> httpx.Client:
    """An HTTP client for the stack's API with its key (or ``key``)."""
    return httpx.Client(base_url=stack.api_url, headers={"x-api-key": key or stack.api_key}, timeout=timeout)


def s3(stack: Any) -> Any:
    """A boto3 S3 client on the stack's emulator (no retries: tests see what S3 says)."""
    return boto3.client(
        "s3",
        endpoint_url=stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"max_attempts": 1}, signature_version="s3v4"),
    )


def sqs(stack: Any) -> Any:
    """A boto3 SQS client on the stack's emulator."""
    return clients(stack.endpoint_url)["sqs"]


def presign(client: httpx.Client, filename: str, content_type: str, size: int,
            recipe: dict[str, Any] | None = None) -> httpx.Response:
    """``POST /uploads``."""
    body: dict[str, Any] = {"filename": filename, "content_type": content_type, "size": size}
    if recipe is not None:
        body["recipe"] = recipe
    return client.post("/uploads", json=body)


def post_file(upload: dict[str, Any], data: bytes, filename: str, content_type: str) -> httpx.Response:
    """The browser-form multipart POST of the presigned fields plus the file, straight to S3."""
    return httpx.post(upload["url"], data=upload["fields"], files={"file": (filename, data, content_type)},
                      timeout=60)


def upload(stack: Any, data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg",
           recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Presign + POST; asserts both were accepted; returns the presign reply."""
    with api(stack) as c:
        r = presign(c, filename, content_type, len(data), recipe)
    assert r.status_code == 201, r.text
    reply = r.json()
    post = post_file(reply["upload"], data, filename, content_type)
    assert post.status_code in (200, 201, 204), post.text
    return reply


def submit_job(stack: Any, image_id: str, recipe: dict[str, Any]) -> str:
    """``POST /jobs`` (202) → job id."""
    with api(stack) as c:
        r = c.post("/jobs", json={"image_id": image_id, "recipe": recipe})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def wait_jobs(
    stack: Any, job_ids: list[str], timeout: float = 90, poll: float = 0.25
) -> dict[str, dict[str, Any]]:
    """Poll ``GET /jobs/{id}`` until every job is terminal (fails the test on timeout)."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with api(stack) as c:
        while True:
            for job_id in [j for j in job_ids if j not in done]:
                r = c.get(f"/jobs/{job_id}")
                assert r.status_code < 500, r.text
                if r.status_code == 200 and r.json()["status"] in TERMINAL:
                    done[job_id] = r.json()
            if len(done) == len(job_ids):
                return done
            if time.monotonic() > deadline:
                pending = [j for j in job_ids if j not in done]
                pytest.fail(f"{len(pending)} jobs not terminal after {timeout}s: {pending[:5]}")
            time.sleep(poll)


def wait_job(stack: Any, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """One job, terminal."""
    return wait_jobs(stack, [job_id], timeout)[job_id]


def download(job: dict[str, Any]) -> bytes:
    """The output of a succeeded job via its presigned URL."""
    r = httpx.get(job["result"]["download_url"], timeout=30)
    assert r.status_code == 200, r.text
    return r.content


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix``."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def jobs_of_image(stack: Any, image_id: str) -> list[dict[str, Any]]:
    """``GET /images/{id}`` → its job records."""
    with api(stack) as c:
        r = c.get(f"/images/{image_id}")
    assert r.status_code == 200, r.text
    return list(r.json().get("jobs") or [])


def assert_serving(stack: Any) -> None:
    """The stack still answers: health 200 and the image list 200."""
    with api(stack) as c:
        h = c.get("/health")
        assert h.status_code == 200, h.text
        li = c.get("/images", params={"limit": 1})
        assert li.status_code == 200, li.text
