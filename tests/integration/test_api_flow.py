"""The API and both triggers through the running local stack, driven by ``pipeline.client``
as a user would: presign → multipart POST to S3 → job → poll → download → decode."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from imagepipe.errors import Conflict, InvalidRecipe, NotFound, PayloadTooLarge, UnsupportedMediaType
from pipeline.client import Client
from pipeline.stack.provision import clients
from tests.unit.imagegen import photo_bytes, truncated

RECIPE = {"resize": {"width": 200, "height": 200, "fit": "inside"}, "format": "webp", "quality": 75}


@pytest.fixture(scope="module")
def client(local_stack: Any) -> Client:
    with Client(local_stack.api_url, local_stack.api_key, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def aws(local_stack: Any) -> dict[str, Any]:
    return clients(local_stack.endpoint_url)


def _outputs(local_stack: Any, aws: dict[str, Any], image_id: str) -> list[str]:
    resp = aws["s3"].list_objects_v2(Bucket=local_stack.resources.dest_bucket, Prefix=f"outputs/{image_id}/")
    return [o["Key"] for o in resp.get("Contents", [])]


def test_api_path_end_to_end(client: Client, local_stack: Any, aws: dict[str, Any]) -> None:
    original = photo_bytes(640, 400, "jpeg", seed=3, quality=92)
    job = client.upload_and_process(original, RECIPE, filename="holiday.jpg", preset="web", timeout=60)
    assert job["status"] == "succeeded", job.get("error")
    assert job["trigger"] == "api" and job["preset"] == "web"
    result = job["result"]
    assert (result["format"].lower(), result["width"], result["height"]) == ("webp", 200, 125)
    assert result["original_bytes"] == len(original)
    assert 0.5 < result["ssim"] <= 1.0 and result["psnr"] > 20
    assert result["compression_ratio"] == pytest.approx(len(original) / result["bytes"], rel=0.01)
    assert {"decode", "encode", "download", "upload", "record"} <= set(result["timings_ms"])

    data = client.download(job)
    assert len(data) == result["bytes"]
    img = Image.open(io.BytesIO(data))
    assert (img.format, img.size) == ("WEBP", (200, 125))

    image = client.get_image(job["image_id"])
    assert image["status"] == "uploaded" and image["facts"]["width"] == 640
    assert [j["job_id"] for j in image["jobs"]] == [job["job_id"]]
    assert client.download(image["download_url"]) == original  # the original is untouched
    assert _outputs(local_stack, aws, job["image_id"]) == [result["output_key"]]
    assert any(j["job_id"] == job["job_id"] for j in client.list_jobs(limit=50)["items"])


def test_s3_event_path_with_awkward_filename(client: Client, local_stack: Any, aws: dict[str, Any]) -> None:
    name = "my photo + café 写真 100%.png"
    up = client.upload(photo_bytes(300, 300, "png", seed=5), filename=name, recipe={"format": "jpeg"})
    assert up["job_id"] and up["key"].endswith("/" + name)
    job = client.wait(up["job_id"], timeout=60)
    assert job["status"] == "succeeded", job.get("error")
    assert job["trigger"] == "s3"
    assert Image.open(io.BytesIO(client.download(job))).format == "JPEG"
    assert client.get_image(up["image_id"])["filename"] == name


def test_duplicate_s3_event_and_duplicate_request(client: Client, local_stack: Any,
                                                  aws: dict[str, Any]) -> None:
    up = client.upload(photo_bytes(320, 240, "jpeg", seed=9), filename="dup me.jpg", recipe=RECIPE)
    job = client.wait(up["job_id"], timeout=60)
    assert job["status"] == "succeeded"
    # redeliver the same S3 event twice, exactly as S3 would encode it
    event = {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Post",
        "s3": {"bucket": {"name": local_stack.resources.source_bucket},
               "object": {"key": up["key"].replace(" ", "+"), "size": up["bytes"], "eTag": "x"}},
    }]}
    for _ in range(2):
        aws["sqs"].send_message(QueueUrl=local_stack.resources.queue_url, MessageBody=json.dumps(event))
    again = client.process(up["image_id"], RECIPE)
    assert again["job_id"] == up["job_id"] and again["created"] is False
    assert again["status"] == "succeeded"
    _wait_queue_empty(aws, local_stack.resources.queue_url)
    image = client.get_image(up["image_id"])
    assert len(image["jobs"]) == 1
    assert image["jobs"][0]["finished_at"] == job["finished_at"]  # not re-run
    assert image["jobs"][0]["attempts"] == 1
    assert len(_outputs(local_stack, aws, up["image_id"])) == 1


def _wait_queue_empty(aws: dict[str, Any], url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        if sum(int(attrs[n]) for n in names) == 0:
            return
        time.sleep(0.1)
    pytest.fail("processing queue did not drain")


@pytest.mark.parametrize(("data", "ctype", "codes"), [
    (truncated(photo_bytes(400, 300, "png", seed=1)), "image/png", {"corrupt_image"}),
    (b"%PDF-1.4\n not an image at all", "image/jpeg", {"unsupported_format", "corrupt_image"}),
])
def test_bad_image_fails_with_engine_code_and_keeps_original(client: Client, data: bytes, ctype: str,
                                                             codes: set[str]) -> None:
    job = client.upload_and_process(data, {"format": "webp"}, filename="bad.img", content_type=ctype,
                                    timeout=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] in codes and job["error"]["message"]
    assert "result" not in job
    image = client.get_image(job["image_id"])
    assert client.download(image["download_url"]) == data


def test_api_errors_are_typed(client: Client) -> None:
    with pytest.raises(UnsupportedMediaType):
        client.upload(b"hello", filename="a.txt", content_type="text/plain")
    with pytest.raises(PayloadTooLarge):
        client.request("POST", "/uploads", json={"filename": "a.png", "content_type": "image/png",
                                                 "size": 10**10})
    with pytest.raises(InvalidRecipe) as info:
        client.upload(photo_bytes(10, 10, "png"), recipe={"resize": {"width": 0}})
    assert info.value.details
    pending = client.request("POST", "/uploads", json={"filename": "later.png", "content_type": "image/png",
                                                       "size": 10})
    with pytest.raises(Conflict):
        client.process(pending["image_id"], {})
    with pytest.raises(NotFound):
        client.process("0" * 32, {})
    with pytest.raises(NotFound):
        client.get_job("0" * 32 + "-" + "0" * 16)


def test_job_batch_end_to_end(client: Client, local_stack: Any, aws: dict[str, Any]) -> None:
    """``POST /jobs/batch`` through the stack: every accepted item runs once, refused items say
    why, and the outputs are the same as one job at a time would give."""
    originals = [photo_bytes(480, 320, "jpeg", seed=40 + i, quality=90) for i in range(3)]
    ids = [client.upload(data, filename=f"batch-{i}.jpg")["image_id"] for i, data in enumerate(originals)]
    pending = client.request("POST", "/uploads", json={"filename": "later.png", "content_type": "image/png",
                                                       "size": 10})
    items = [{"image_id": i, "recipe": RECIPE, "preset": "web"} for i in ids]
    items += [{"image_id": "0" * 32, "recipe": RECIPE}, {"image_id": pending["image_id"], "recipe": RECIPE},
              {"image_id": ids[0], "recipe": {"resize": {"width": 0}}}]
    outcomes = client.process_many(items)
    assert [o.get("error", {}).get("code") for o in outcomes] == [None] * 3 + [
        "not_found", "conflict", "invalid_recipe"]
    jobs = [client.wait(o["job_id"], timeout=60) for o in outcomes[:3]]
    for data, job in zip(originals, jobs, strict=True):
        assert job["status"] == "succeeded", job.get("error")
        assert (job["trigger"], job["preset"], job["attempts"]) == ("api", "web", 1)
        out = Image.open(io.BytesIO(client.download(job)))
        assert (out.format, out.size) == ("WEBP", (200, 133))
        assert job["result"]["original_bytes"] == len(data)
        assert _outputs(local_stack, aws, job["image_id"]) == [job["result"]["output_key"]]
    # a repeated batch is a duplicate of every job: same ids, nothing runs again
    again = client.process_many(items[:3])
    assert [(o["job_id"], o["created"], o["status"]) for o in again] == [
        (j["job_id"], False, "succeeded") for j in jobs]


def test_s3_enforces_the_presigned_policy(local_stack: Any, client: Client) -> None:
    presign = client.request("POST", "/uploads", json={"filename": "p.png", "content_type": "image/png",
                                                       "size": 100})
    url, fields = presign["upload"]["url"], presign["upload"]["fields"]
    wrong_key = {**fields, "key": fields["key"].rsplit("/", 1)[0] + "/other.png"}
    r = httpx.post(url, data=wrong_key, files={"file": ("p.png", b"x" * 100, "image/png")}, timeout=30)
    assert r.status_code == 403
    wrong_type = {**fields, "Content-Type": "text/html"}
    r = httpx.post(url, data=wrong_type, files={"file": ("p.png", b"x" * 100, "text/html")}, timeout=30)
    assert r.status_code == 403
    empty = httpx.post(url, data=fields, files={"file": ("p.png", b"", "image/png")}, timeout=30)
    assert empty.status_code == 400
    more_than_announced = httpx.post(url, data=fields, files={"file": ("p.png", b"x" * 101, "image/png")},
                                     timeout=30)
    assert more_than_announced.status_code == 400 and b"EntityTooLarge" in more_than_announced.content
    with pytest.raises(Conflict):
        client.process(presign["image_id"], {})


ROUTES = [
    ("POST", "/uploads"), ("POST", "/jobs"), ("POST", "/jobs/batch"), ("GET", "/jobs"),
    ("GET", "/jobs/" + "a" * 32 + "-" + "b" * 16),
    ("GET", "/images"), ("GET", "/images/" + "a" * 32), ("DELETE", "/images/" + "a" * 32), ("GET", "/health"),
    ("GET", "/nowhere"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_requires_the_api_key(local_stack: Any, method: str, path: str) -> None:
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": local_stack.api_key[:-1]}):
        r = httpx.request(method, local_stack.api_url + path, headers=headers, json={}, timeout=30)
        assert r.status_code == 401, (method, path, headers)
        assert r.json()["error"]["code"] == "unauthorized"


def test_delete_removes_original_outputs_and_records(client: Client, local_stack: Any,
                                                     aws: dict[str, Any]) -> None:
    job = client.upload_and_process(photo_bytes(120, 90, "jpeg", seed=2), {"format": "png"}, timeout=60)
    assert job["status"] == "succeeded"
    image = client.get_image(job["image_id"])
    client.delete_image(job["image_id"])
    with pytest.raises(NotFound):
        client.get_image(job["image_id"])
    with pytest.raises(NotFound):
        client.get_job(job["job_id"])
    assert _outputs(local_stack, aws, job["image_id"]) == []
    assert httpx.get(image["download_url"], timeout=30).status_code in (403, 404)
    listed = aws["s3"].list_objects_v2(Bucket=local_stack.resources.source_bucket,
                                       Prefix=f"uploads/{job['image_id']}/")
    assert listed.get("KeyCount", 0) == 0
    assert all(i["image_id"] != job["image_id"] for i in client.iter_images())


def test_listing_newest_first_with_cursor(client: Client) -> None:
    ids = [client.upload(photo_bytes(16, 16, "png", seed=i), filename=f"n{i}.png")["image_id"]
           for i in range(3)]
    first = client.list_images(limit=2)
    second = client.list_images(limit=2, cursor=first["next_cursor"])
    newest = [i["image_id"] for i in first["items"] + second["items"]][:3]
    assert newest == ids[::-1]


def test_health(client: Client) -> None:
    health = client.health()
    assert health["status"] == "ok"
    assert all(c["ok"] for c in health["checks"].values())
    assert isinstance(health["dlq_depth"], int)
