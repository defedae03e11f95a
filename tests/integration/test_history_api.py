"""History through the running local stack: real jobs (one failed, one duplicated) and seeded
ones counted in GET /stats exactly as a full scan counts them; the filtered, paginated job list;
the server-side CSV export with its progress and presigned download; deleting an image."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagepipe.service import rollups
from pipeline.client import Client
from pipeline.rollups_cli import table_for
from pipeline.seed import seed, synthetic_jobs
from tests.unit.imagegen import photo_bytes

SEED, N = 11, 300
#: appended to the seeded jobs' presets: other tests seed the same session stack
LABEL = "#hist-api"
AVIF = f"AVIF 2048 {LABEL}"
RECIPE = {"resize": {"width": 120}, "format": "png"}


@pytest.fixture(scope="module")
def client(local_stack: Any) -> Client:
    with Client(local_stack.api_url, local_stack.api_key, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def table(local_stack: Any) -> Any:
    return table_for(local_stack.endpoint_url, local_stack.env["IMAGEPIPE_TABLE"])


@pytest.fixture(scope="module")
def history(client: Client, table: Any) -> dict[str, Any]:
    ok = client.upload_and_process(photo_bytes(200, 150, "jpeg", seed=5), RECIPE, filename="h.jpg",
                                   preset="hist-test", timeout=60)
    assert ok["status"] == "succeeded", ok.get("error")
    again = client.process(ok["image_id"], RECIPE, preset="hist-test")  # a duplicate request
    assert again["created"] is False
    bad = client.upload(b"\xff\xd8\xff\xe0 not really a jpeg" * 10, filename="bad.jpg",
                        content_type="image/jpeg")
    failed = client.wait(client.process(bad["image_id"], RECIPE, preset="hist-test")["job_id"], timeout=60)
    assert failed["status"] == "failed"
    out = seed(table, N, days=60, seed=SEED, label=LABEL)
    return {"ok": ok, "failed": failed, "seeded": list(synthetic_jobs(N, days=60, seed=SEED, label=LABEL)),
            "seed": out}


def _range() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=89)).isoformat(), "to": today.isoformat()}


def _check(table: Any) -> dict[str, Any]:
    """rollups.check, retried briefly: a job of another test may finish between scan and read."""
    for _ in range(5):
        report = rollups.check(table)
        if report["ok"]:
            return report
        time.sleep(1)
    return report


def test_stats_equal_a_full_scan_and_count_each_job_once(client: Client, table: Any, history: dict) -> None:
    assert _check(table)["ok"]
    mine = client.stats(**_range(), preset="hist-test")
    assert mine["totals"]["jobs"] == 2 and mine["totals"]["succeeded"] == 1 and mine["totals"]["failed"] == 1
    assert mine["errors"] == [{"code": history["failed"]["error"]["code"], "jobs": 1}]
    assert mine["totals"]["bytes_in"] == history["ok"]["result"]["original_bytes"]
    assert mine["groups"][0]["arrival"] == "presigned" and {g["format"] for g in mine["groups"]} == {"png"}
    seeded = [j for j in history["seeded"] if j["status"] == "succeeded" and j["arrival"] == "drop"]
    drops = client.stats(**_range(), arrival="drop", status="succeeded", preset=",".join(
        sorted({j["preset"] or "none" for j in history["seeded"]})))
    assert drops["totals"]["jobs"] == len(seeded)  # the label keeps other tests' seeds out
    assert drops["bucket_error"] == pytest.approx(2 ** (1 / 8) - 1, rel=1e-4)


def test_job_list_filters_and_pages_through_the_stack(client: Client, history: dict) -> None:
    avif = [j for j in history["seeded"] if j["out_format"] == "avif"]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_jobs(limit=7, cursor=cursor, **_range(), format="avif", preset=AVIF)
        assert len(page["items"]) <= 7
        seen += [j["job_id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == sum(1 for j in avif if j["preset"] == AVIF)
    created = [j["created_at"] for j in avif if j["preset"] == AVIF]
    assert seen == [j["job_id"] for j in sorted((j for j in avif if j["preset"] == AVIF),
                                                key=lambda j: j["created_at"], reverse=True)]
    assert len(created) > 7
    failed = client.list_jobs(limit=100, **_range(), status="failed", preset="hist-test")
    assert [j["job_id"] for j in failed["items"]] == [history["failed"]["job_id"]]
    day = history["seeded"][0]["created_at"][:10]
    one_day = client.list_jobs(limit=100, **{"from": day, "to": day},
                               preset=f"Archive PNG {LABEL},none {LABEL}")
    assert all(j["created_at"].startswith(day) for j in one_day["items"])


def test_export_writes_every_matching_job_with_progress(client: Client, history: dict) -> None:
    filters = {**_range(), "format": "jpeg"}
    expected = client.stats(**filters)["totals"]["jobs"]
    exp = client.create_export(**filters)
    assert exp["status"] == "queued" and exp["expected_rows"] == expected and exp["download_url"] is None
    deadline = time.monotonic() + 60
    while exp["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, exp
        time.sleep(0.2)
        exp = client.get_export(exp["export_id"])
    assert exp["status"] == "succeeded" and exp["progress"] == 1.0 and exp["rows"] == expected
    rows = list(csv.DictReader(io.StringIO(client.download(exp["download_url"]).decode())))
    assert len(rows) == expected and {r["format"] for r in rows} == {"jpeg"}
    assert len({r["job_id"] for r in rows}) == expected


def test_deleting_an_image_subtracts_its_jobs(client: Client, table: Any, history: dict) -> None:
    before = client.stats(**_range(), preset="hist-test")["totals"]
    client.delete_image(history["failed"]["image_id"])
    after = client.stats(**_range(), preset="hist-test")["totals"]
    assert (after["jobs"], after["failed"], after["succeeded"]) == (before["jobs"] - 1, 0, 1)
    assert _check(table)["ok"]


def test_backfill_then_check_through_the_cli(local_stack: Any, table: Any, history: dict,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.rollups_cli import main

    args = ["--endpoint-url", local_stack.endpoint_url, "--table", local_stack.env["IMAGEPIPE_TABLE"]]
    before = rollups.read(table, "0000-00-00", "9999-12-31").totals
    rollups.clear(table)  # the rollups lost: check says so
    assert main(["check", *args]) == 1
    assert '"ok": false' in capsys.readouterr().out
    assert main(["backfill", *args]) == 0
    assert main(["check", *args]) == 0
    assert rollups.read(table, "0000-00-00", "9999-12-31").totals == before
