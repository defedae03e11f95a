"""Every way in, through the running local stack: objects dropped into the source bucket by a
plain S3 client (boto3 ``put_object`` and a multipart ``upload_file``), images POSTed straight
to ``POST /images`` (both shapes, over real HTTP), presets from ``GET /presets``, and the
``python -m pipeline upload`` CLI on a folder with a bad file in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from boto3.s3.transfer import TransferConfig
from PIL import Image

from imagepipe.service.direct import DIRECT_MAX_BODY_BYTES
from imagepipe.service.drops import drop_image_id
from pipeline.client import Client
from pipeline.stack.provision import clients
from tests.unit.imagegen import photo_bytes, text_bytes, truncated

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(local_stack: Any) -> Client:
    with Client(local_stack.api_url, local_stack.api_key, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def s3(local_stack: Any) -> Any:
    return clients(local_stack.endpoint_url)["s3"]


@pytest.fixture(scope="module")
def presets(client: Client) -> dict[str, Any]:
    return client.presets()


def _drop(local_stack: Any, s3: Any, key: str, body: bytes, **kw: Any) -> str:
    """``put_object`` under ``key``; the image id the drop will be recorded under."""
    etag = s3.put_object(Bucket=local_stack.resources.source_bucket, Key=key, Body=body, **kw)["ETag"]
    return drop_image_id(local_stack.resources.source_bucket, key, etag.strip('"'))


def _settled(client: Client, image_id: str, jobs: int = 1, timeout: float = 90) -> dict[str, Any]:
    """The image once it is recorded and ``jobs`` of its jobs are terminal."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            image = client.get_image(image_id)
            done = [j for j in image["jobs"] if j["status"] in ("succeeded", "failed")]
            if len(done) >= jobs:
                return image
        except Exception as exc:  # not recorded yet
            if getattr(exc, "code", "") != "not_found":
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"image {image_id} not settled after {timeout} s")
        time.sleep(0.2)


def _outputs(local_stack: Any, s3: Any, image_id: str) -> list[str]:
    resp = s3.list_objects_v2(Bucket=local_stack.resources.dest_bucket, Prefix=f"outputs/{image_id}/")
    return [o["Key"] for o in resp.get("Contents", [])]


# --- drops -----------------------------------------------------------------------------------


ODD_KEYS = [
    "uploads/holiday 2024/beach photo.jpg",
    "uploads/a+b/c+d.jpg",
    "uploads/100%/50% off %41.jpg",
    "uploads/ünïcödé/日本語 ☃.jpg",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_put_object_with_odd_keys_is_recorded_and_processed_by_the_default_rule(
    local_stack: Any, s3: Any, client: Client, presets: dict[str, Any], key: str
) -> None:
    original = photo_bytes(320, 200, "jpeg", seed=len(key))
    image_id = _drop(local_stack, s3, key, original, ContentType="binary/octet-stream")
    image = _settled(client, image_id)
    assert (image["key"], image["filename"], image["arrival"]) == (key, key.rsplit("/", 1)[1], "drop")
    assert image["content_type"] == "image/jpeg" and image["drop_rule"] == "default"
    [job] = image["jobs"]
    assert job["status"] == "succeeded", job.get("error")
    default = next(p for p in presets["items"] if p["name"] == presets["default"])
    assert (job["recipe_hash"], job["arrival"], job["drop_rule"]) == (
        default["recipe_hash"],
        "drop",
        "default",
    )
    assert _outputs(local_stack, s3, image_id) == [job["result"]["output_key"]]
    assert client.download(image["download_url"]) == original  # the original stays


def test_multipart_upload_file_is_one_image_and_one_output(
    local_stack: Any, s3: Any, client: Client, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    noisy = rng.integers(0, 256, (1100, 1900, 3), dtype=np.uint8)  # incompressible: > 5 MiB as PNG
    path = tmp_path / "big scan.png"
    Image.fromarray(noisy).save(path, "PNG", compress_level=0)
    assert path.stat().st_size > 5 * 1024 * 1024  # two parts of the 5 MiB chunk size
    key = "uploads/scans/big scan.png"
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(path), local_stack.resources.source_bucket, key, Config=cfg)
    etag = s3.head_object(Bucket=local_stack.resources.source_bucket, Key=key)["ETag"].strip('"')
    assert etag.endswith("-2")  # it really went up in parts
    image_id = drop_image_id(local_stack.resources.source_bucket, key, etag)
    image = _settled(client, image_id, timeout=120)
    [job] = image["jobs"]
    assert job["status"] == "succeeded", job.get("error")
    assert image["bytes"] == path.stat().st_size and len(_outputs(local_stack, s3, image_id)) == 1


def test_duplicated_and_reordered_events_make_one_record_and_one_output(
    local_stack: Any, s3: Any, client: Client
) -> None:
    bucket, key = local_stack.resources.source_bucket, "uploads/dupes/one.jpg"
    first = photo_bytes(200, 120, "jpeg", seed=40)
    second = photo_bytes(200, 120, "jpeg", seed=41)
    id1 = _drop(local_stack, s3, key, first)
    _settled(client, id1)
    id2 = _drop(local_stack, s3, key, second)  # the same key, new bytes: a new object version
    _settled(client, id2)
    sqs = clients(local_stack.endpoint_url)["sqs"]
    queue = local_stack.resources.queue_url

    def event(image_id: str, size: int) -> str:
        etag = client.get_image(image_id)["etag"]  # as the first event carried it
        return json.dumps(
            {
                "Records": [
                    {
                        "eventVersion": "2.1",
                        "eventSource": "aws:s3",
                        "awsRegion": "us-east-1",
                        "eventName": "ObjectCreated:Put",
                        "s3": {
                            "bucket": {"name": bucket},
                            "object": {"key": "uploads/dupes/one.jpg", "size": size, "eTag": etag},
                        },
                    }
                ]
            }
        )

    # the second version's event three more times, then (reordered) an old event for the first one
    for body in [event(id2, len(second))] * 3 + [event(id1, len(first))]:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the workers have taken and finished them
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
        if not any(int(attrs[n]) for n in names):
            break
        time.sleep(0.3)
    for image_id in (id1, id2):
        image = client.get_image(image_id)
        [job] = image["jobs"]
        assert job["status"] == "succeeded" and job["attempts"] == 1
        assert len(_outputs(local_stack, s3, image_id)) == 1
    mine = [i for i in client.list_images(limit=100, arrival="drop")["items"] if i["key"] == key]
    assert sorted(i["image_id"] for i in mine) == sorted([id1, id2])


def test_rules_thumbnails_and_skip(
    local_stack: Any, s3: Any, client: Client, presets: dict[str, Any]
) -> None:
    rules = {r["prefix"]: r for r in presets["drop_rules"]}
    assert (
        rules["uploads/thumbnails/"]["preset"] == "Thumbnail 320 JPEG" and rules["uploads/incoming/"]["skip"]
    )
    thumb = _drop(local_stack, s3, "uploads/thumbnails/t.jpg", photo_bytes(640, 480, "jpeg", seed=5))
    image = _settled(client, thumb)
    [job] = image["jobs"]
    assert (job["status"], job["drop_rule"], job["preset"]) == (
        "succeeded",
        "uploads/thumbnails/",
        "Thumbnail 320 JPEG",
    )
    assert (job["result"]["width"], job["result"]["height"]) == (320, 320)
    skipped = _drop(local_stack, s3, "uploads/incoming/later.jpg", photo_bytes(64, 64, "jpeg", seed=6))
    deadline = time.monotonic() + 30
    while True:
        try:
            image = client.get_image(skipped)
            break
        except Exception:
            assert time.monotonic() < deadline, "the skipped drop was never recorded"
            time.sleep(0.2)
    assert image["drop_rule"] == "uploads/incoming/" and image["jobs"] == []
    # a skipped image can still be processed on request, by preset name
    job = client.wait(client.process(skipped, preset="AVIF 2048")["job_id"], timeout=60)
    assert job["status"] == "succeeded" and job["result"]["format"].lower() == "avif"
    assert job["arrival"] == "drop" and "drop_rule" not in job


def test_rule_precedence_and_recipe_rules_on_an_overridden_stack(make_stack: Any, tmp_path: Path) -> None:
    override = {
        "drop_rules": [
            {"prefix": "uploads/x/", "recipe": {"format": "png", "resize": {"width": 10}}},
            {"prefix": "uploads/x/y/", "preset": "AVIF 2048"},
        ],
        "drop_default": {"skip": True},
    }
    stack = make_stack(
        tmp_path / "override", workers=1, extra_env={"IMAGEPIPE_PRESETS": json.dumps(override)}
    )
    s3 = clients(stack.endpoint_url)["s3"]
    with Client(stack.api_url, stack.api_key, timeout=60) as c:
        assert c.presets()["drop_default"] == {"prefix": None, "skip": True}
        first = _drop(stack, s3, "uploads/x/y/z.jpg", photo_bytes(100, 50, "jpeg", seed=8))
        other = _drop(stack, s3, "uploads/elsewhere.jpg", photo_bytes(100, 50, "jpeg", seed=9))
        image = _settled(c, first)
        [job] = image["jobs"]
        assert job["drop_rule"] == "uploads/x/" and job["result"]["format"].lower() == "png"
        assert job["result"]["width"] == 10
        deadline = time.monotonic() + 30
        while True:
            try:
                assert c.get_image(other)["jobs"] == [] and c.get_image(other)["drop_rule"] == "default"
                break
            except Exception as exc:
                if getattr(exc, "code", "") != "not_found" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_oversized_and_non_image_drops_fail_typed_and_keep_the_original(
    local_stack: Any, s3: Any, client: Client
) -> None:
    cap = int(local_stack.env["IMAGEPIPE_MAX_UPLOAD_BYTES"])
    big = _drop(local_stack, s3, "uploads/huge/too big.jpg", b"\xff\xd8\xff" + b"\0" * cap)
    text = _drop(local_stack, s3, "uploads/notes/readme.jpg", text_bytes())
    broken = _drop(
        local_stack, s3, "uploads/broken/half.jpg", truncated(photo_bytes(400, 300, "jpeg", seed=2))
    )
    for image_id, codes in (
        (big, {"too_large"}),
        (text, {"unsupported_format"}),
        (broken, {"corrupt_image"}),
    ):
        image = _settled(client, image_id)
        [job] = image["jobs"]
        assert job["status"] == "failed" and job["error"]["code"] in codes, job["error"]
        assert image["arrival"] == "drop" and _outputs(local_stack, s3, image_id) == []
        assert s3.head_object(Bucket=local_stack.resources.source_bucket, Key=image["key"])
    assert client.health()["status"] == "ok"


def test_objects_outside_the_prefix_are_not_recorded(local_stack: Any, s3: Any, client: Client) -> None:
    bucket = local_stack.resources.source_bucket
    etag = s3.put_object(Bucket=bucket, Key="elsewhere/x.jpg", Body=photo_bytes(50, 50, "jpeg"))["ETag"]
    time.sleep(2)
    with pytest.raises(Exception) as exc:
        client.get_image(drop_image_id(bucket, "elsewhere/x.jpg", etag.strip('"')))
    assert getattr(exc.value, "code", "") == "not_found"


# --- direct uploads ----------------------------------------------------------------------------


def test_direct_upload_both_shapes_over_http(local_stack: Any, client: Client, s3: Any) -> None:
    original = photo_bytes(640, 400, "jpeg", seed=11)
    headers = {"x-api-key": local_stack.api_key}
    # (a) multipart/form-data, as curl -F would send it
    resp = httpx.post(
        f"{local_stack.api_url}/images",
        headers=headers,
        files={"file": ("form.jpg", original, "image/jpeg")},
        data={"recipe": json.dumps({"format": "webp", "resize": {"width": 100}})},
    )
    assert resp.status_code == 201, resp.text
    a = resp.json()
    # (b) the raw body with query parameters, as curl --data-binary would
    resp = httpx.post(
        f"{local_stack.api_url}/images",
        headers={**headers, "content-type": "image/jpeg"},
        params={"filename": "raw body.jpg", "preset": "Thumbnail 320 JPEG"},
        content=original,
    )
    assert resp.status_code == 201, resp.text
    b = resp.json()
    assert b["filename"] == "raw body.jpg" and b["content_type"] == "image/jpeg"
    for up, width in ((a, 100), (b, 320)):
        image = _settled(client, up["image_id"])
        [job] = image["jobs"]
        assert job["job_id"] == up["job_id"] and job["status"] == "succeeded", job.get("error")
        assert (image["arrival"], job["arrival"], job["result"]["width"]) == ("direct", "direct", width)
        assert client.download(image["download_url"]) == original
    # the client does the same
    c = client.upload_direct(original, filename="client.jpg", preset="AVIF 2048", form=False)
    assert client.wait(c["job_id"], timeout=60)["status"] == "succeeded"


def test_direct_upload_errors_over_http(local_stack: Any) -> None:
    url, key = f"{local_stack.api_url}/images", {"x-api-key": local_stack.api_key}
    jpeg = photo_bytes(64, 64, "jpeg", seed=1)
    big = jpeg + b"\0" * (DIRECT_MAX_BODY_BYTES + 1 - len(jpeg))
    resp = httpx.post(url, headers={**key, "content-type": "image/jpeg"}, content=big, timeout=60)
    assert resp.status_code == 413 and "POST /uploads" in resp.json()["error"]["message"]
    assert "4706304 bytes for POST /images" in resp.json()["error"]["message"]  # the function's answer
    # a body whose base64 event is over Lambda's limit never reaches the function (as on AWS)
    resp = httpx.post(
        url, headers={**key, "content-type": "image/jpeg"}, content=jpeg + b"\0" * 5_000_000, timeout=60
    )
    assert (
        resp.status_code == 413 and "Lambda's 6291456-byte request limit" in resp.json()["error"]["message"]
    )
    resp = httpx.post(url, headers={**key, "content-type": "text/plain"}, content=b"hello")
    assert resp.status_code == 415 and resp.json()["error"]["code"] == "unsupported_media_type"
    resp = httpx.post(url, headers=key, files={"file": ("a.jpg", text_bytes(), "image/jpeg")})
    assert resp.status_code == 415
    resp = httpx.post(
        f"{local_stack.api_url}/uploads", headers={**key, "content-type": "image/jpeg"}, content=jpeg
    )
    assert resp.status_code == 400 and "POST /images" in resp.json()["error"]["message"]


def test_get_presets(client: Client, presets: dict[str, Any]) -> None:
    names = [p["name"] for p in presets["items"]]
    assert presets["default"] in names and len(set(names)) == len(names)
    from pipeline.presets import preset_hashes

    assert {p["recipe_hash"]: p["name"] for p in presets["items"]} == preset_hashes()  # one source


def test_a_preset_slug_works_in_a_url_and_the_job_keeps_the_preset_name(local_stack: Any) -> None:
    """``curl ...?preset=thumbnail-320-jpeg``: no quoting of a display name with spaces."""
    key = {"x-api-key": local_stack.api_key}
    png = photo_bytes(120, 90, "png", seed=31)
    resp = httpx.post(f"{local_stack.api_url}/images?filename=slug.png&preset=THUMBNAIL-320-jpeg",
                      headers={**key, "content-type": "image/png"}, content=png)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    job = httpx.get(f"{local_stack.api_url}/jobs/{body['job_id']}", headers=key).json()
    assert job["preset"] == "Thumbnail 320 JPEG"


# --- the upload CLI ------------------------------------------------------------------------------


def test_upload_cli_on_a_folder_with_a_bad_file(local_stack: Any, client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "album"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.jpg").write_bytes(photo_bytes(200, 150, "jpeg", seed=21))
    (folder / "sub" / "two.png").write_bytes(photo_bytes(150, 200, "png", seed=22))
    (folder / "broken.jpg").write_bytes(truncated(photo_bytes(300, 200, "jpeg", seed=23)))
    env = {**os.environ, "IMAGEPIPE_API_URL": local_stack.api_url, "IMAGEPIPE_API_KEY": local_stack.api_key}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "upload", str(folder), "--preset", "AVIF 2048"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "2 of 3 uploaded and processed with preset 'AVIF 2048'" in proc.stdout, proc.stdout
    assert "FAILED corrupt_image" in proc.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "pipeline", "upload", str(folder / "one.jpg")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "pipeline", "upload", str(folder), "--preset", "nope"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "unknown preset" in bad.stderr
    noapi = subprocess.run(
        [sys.executable, "-m", "pipeline", "upload", str(folder)],
        cwd=REPO,
        env={k: v for k, v in env.items() if not k.startswith("IMAGEPIPE_API")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert noapi.returncode == 2 and "IMAGEPIPE_API_URL" in noapi.stderr
