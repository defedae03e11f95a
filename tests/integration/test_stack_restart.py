"""Nothing is lost across restarts: ``python -m pipeline serve`` stopped (SIGTERM) or killed
(SIGKILL) and started again on the same data dir; and a processor worker killed mid-job."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.unit.imagegen import photo_bytes

RECIPE = {"resize": {"width": 48, "height": 48, "fit": "inside"}, "format": "png"}


class Api:
    """Just enough of the HTTP API for these tests (plain httpx, like any client)."""

    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30)

    def upload(self, data: bytes, name: str, recipe: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"filename": name, "content_type": "image/png", "size": len(data)}
        if recipe:
            body["recipe"] = recipe
        r = self.http.post("/uploads", json=body)
        assert r.status_code == 201, r.text
        p = r.json()
        post = httpx.post(
            p["upload"]["url"],
            data=p["upload"]["fields"],
            files={"file": (name, data, "image/png")},
            timeout=30,
        )
        assert post.status_code in (200, 201, 204), post.text  # acknowledged by "S3"
        return p["image_id"]

    def image(self, image_id: str) -> dict[str, Any]:
        r = self.http.get(f"/images/{image_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_jobs(self, image_id: str, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.image(image_id).get("jobs") or []
            if jobs and all(j["status"] in ("succeeded", "failed") for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                pytest.fail(f"{image_id}: jobs not finished in {timeout}s: {jobs}")
            time.sleep(0.25)

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def all_image_ids(self) -> set[str]:
        ids: set[str] = set()
        cursor = None
        while True:
            r = self.http.get("/images", params={"cursor": cursor} if cursor else None)
            assert r.status_code == 200, r.text
            body = r.json()
            ids |= {i["image_id"] for i in body["items"]}
            cursor = body.get("next_cursor")
            if not cursor:
                return ids


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _decodes(url: str) -> tuple[int, int]:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    return Image.open(io.BytesIO(r.content)).size


@pytest.mark.timeout(300)
def test_restart_after_sigkill_and_after_a_clean_stop_loses_nothing(serve_process, tmp_path):
    """serve, process, SIGKILL mid-batch, serve again (acknowledged uploads are processed exactly
    once), stop cleanly, serve again (everything still listed and downloadable)."""
    data_dir = tmp_path / "state"
    first = serve_process(data_dir, workers=1)
    api = Api(first.api_url, first.api_key)
    img_a = api.upload(photo_bytes(120, 90, "png", seed=1), "a.png", recipe=RECIPE)  # S3 event trigger
    img_b = api.upload(photo_bytes(100, 100, "png", seed=2), "b b+ü.png")
    r = api.http.post("/jobs", json={"image_id": img_b, "recipe": RECIPE})  # API trigger
    assert r.status_code == 202, r.text
    assert [j["status"] for j in api.wait_jobs(img_a) + api.wait_jobs(img_b)] == ["succeeded", "succeeded"]
    batch = [
        api.upload(photo_bytes(400, 300, "png", seed=10 + i), f"k{i}.png", recipe=RECIPE) for i in range(4)
    ]
    children = _children(first.proc.pid)
    assert len(children) >= 3  # emulator, the processor worker, the reconciler worker
    first.kill()  # SIGKILL right after the uploads were acknowledged, while their batch is in flight
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "orphans left after SIGKILL"

    second = serve_process(data_dir, workers=1)
    api2 = Api(second.api_url, second.api_key)
    assert {img_a, img_b, *batch} <= api2.all_image_ids()
    for image_id in batch:
        jobs = api2.wait_jobs(image_id)
        assert len(jobs) == 1, jobs  # one job per image and recipe, no duplicates
        assert jobs[0]["status"] == "succeeded", jobs
    before = {i: api2.image(i) for i in (img_a, img_b, *batch)}
    assert second.stop() == 0  # SIGTERM: clean shutdown

    third = serve_process(data_dir, workers=1)
    api3 = Api(third.api_url, third.api_key)
    assert set(before) <= api3.all_image_ids()
    for image_id, old in before.items():
        now = api3.image(image_id)
        assert [(j["job_id"], j["status"]) for j in now["jobs"]] == [
            (j["job_id"], j["status"]) for j in old["jobs"]
        ]
        job = api3.job(now["jobs"][0]["job_id"])
        assert job["status"] == "succeeded"
        assert max(_decodes(job["result"]["download_url"])) == 48  # the output survived
        original = now.get("download_url") or now.get("original", {}).get("download_url")
        assert original, now
        assert httpx.get(original, timeout=30).status_code == 200  # the original survived


def test_api_key_is_generated_once_and_persisted(tmp_path):
    from pipeline.stack.serve import _load_or_create_api_key

    old = os.environ.pop("IMAGEPIPE_API_KEY", None)
    try:
        k1 = _load_or_create_api_key(tmp_path, None)
        k2 = _load_or_create_api_key(tmp_path, None)
        assert k1 == k2 and len(k1) >= 32
        assert (tmp_path / "api_key").stat().st_mode & 0o077 == 0
        assert _load_or_create_api_key(tmp_path, "explicit") == "explicit"
    finally:
        if old is not None:
            os.environ["IMAGEPIPE_API_KEY"] = old


@pytest.mark.timeout(180)
def test_worker_killed_mid_job_the_job_still_finishes(local_stack):
    api = Api(local_stack.api_url, local_stack.api_key)
    heavy = {"format": "avif", "quality": 60, "avif": {"speed": 6}}  # ~2 s of encoding on this machine
    data = photo_bytes(1600, 1200, "png", seed=99)
    image_id = api.upload(data, "heavy.png")
    crashes_before = local_stack.processor.stats["worker_crashed"]
    r = api.http.post("/jobs", json={"image_id": image_id, "recipe": heavy})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 60
    killed = None
    while killed is None and time.monotonic() < deadline:
        busy = local_stack.processor.busy_pids()
        status = api.job(job_id)["status"]
        if busy and status == "running":
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
            break
        if status in ("succeeded", "failed"):
            pytest.skip("the job finished before a worker could be killed (machine too fast for this recipe)")
        time.sleep(0.02)
    assert killed is not None, "never saw the job running on a worker"
    job = api.job(job_id)
    deadline = time.monotonic() + 120
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.25)
        job = api.job(job_id)
    assert local_stack.processor.stats["worker_crashed"] > crashes_before
    assert killed not in local_stack.processor.pids()  # the worker was replaced
    assert job["status"] in ("succeeded", "failed"), job
    if job["status"] == "failed":
        assert job["error"]["code"], job  # a clear, typed error after the retries
    assert local_stack.health()["workers"]["alive"] == 2
