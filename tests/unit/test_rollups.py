"""Rollups (service/rollups.py): each terminal job counted once in the same transaction as
its terminal write, failures as failures, deletions subtracted, sealing lossless, backfill and
check agreeing with a full scan. Against moto's in-process DynamoDB."""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter

import pytest

from imagepipe.errors import CorruptImage
from imagepipe.service import rollups
from imagepipe.service.jobs import JobRunner, new_job
from imagepipe.service.records import now_iso
from tests.unit.service_env import FakeEngine, mocked_backend

RECIPES = [{"format": "webp", "quality": q} for q in (50, 60, 70)]


@pytest.fixture
def backend():
    with mocked_backend() as b:
        yield b


def _image(backend) -> dict:
    image_id = uuid.uuid4().hex
    key = f"{backend.config.upload_prefix}{image_id}/a.png"
    image = {"image_id": image_id, "key": key, "filename": "a.png", "status": "uploaded",
             "created_at": now_iso()}
    backend.records.put_image(image)
    backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=b"ORIGINAL-BYTES")
    return image


def _job(backend, image, recipe: dict, preset: str | None = "web", **extra) -> str:
    from imagepipe.core.recipe import parse_recipe

    parsed = parse_recipe(recipe)
    job = new_job(image, parsed.model_dump(mode="json"), parsed.recipe_hash(), trigger="api", preset=preset)
    job.update(extra)
    backend.records.create_job(job)
    return job["job_id"]


def _totals(backend) -> dict[rollups.Dims, Counter]:
    return rollups.read(backend.records.table, "0000-00-00", "9999-12-31").totals


def _n(totals, **where) -> int:
    return sum(c["n"] for d, c in totals.items() if all(getattr(d, k) == v for k, v in where.items()))


def test_buckets_and_their_error_bound():
    for value in (0.003, 0.5, 1.0, 1.19, 7.3, 1234.5):
        b = rollups.bucket_of(value)
        lo, hi = rollups.bucket_bounds(b)
        assert lo <= value < hi * (1 + 1e-12)
        assert abs(rollups.bucket_mid(b) / value - 1) <= rollups.BUCKET_ERROR + 1e-12
    assert math.isclose(rollups.BUCKET_ERROR, 2 ** (1 / 8) - 1)


def test_dims_round_trip_with_hash_in_preset():
    d = rollups.Dims("2026-01-02", "succeeded", "webp", "my#preset/%x", "drop")
    assert rollups.Dims.from_sk(d.sk()) == d


def test_redelivered_and_reordered_events_count_each_job_once(backend):
    image = _image(backend)
    runner = JobRunner(backend, engine=FakeEngine())
    ids = [_job(backend, image, r) for r in RECIPES]
    assert runner.run(ids[1]) == "succeeded"
    assert runner.run(ids[1]) == "skipped"  # redelivered
    assert runner.run(ids[0]) == "succeeded"
    assert runner.run(ids[2]) == "succeeded"
    assert runner.run(ids[0]) == "skipped"  # a late duplicate, out of order
    # a late permanent failure or the reconciler for a finished job: refused, counts nothing
    assert backend.records.fail_job(ids[2], "retries_exhausted", "late") is False
    totals = _totals(backend)
    assert _n(totals) == 3 and _n(totals, status="succeeded", format="webp", preset="web",
                                  arrival="presigned") == 3
    c = sum(totals.values(), Counter())
    assert c["bytes_in"] == 3 * 14 and c["bytes_out"] == 3 * 6 and c["timed"] == 3
    assert c[f"h:ratio:{rollups.bucket_of(14 / 6)}"] == 3
    assert c[f"h:dssim:{rollups.bucket_of(1 - 0.97)}"] == 3
    assert rollups.check(backend.records.table)["ok"]


def test_a_failed_job_counts_as_failed_with_its_code(backend):
    image = _image(backend)
    job_id = _job(backend, image, {"format": "avif"}, preset=None, arrival="drop")
    assert JobRunner(backend, engine=FakeEngine(error=CorruptImage("bad"))).run(job_id) == "failed"
    assert JobRunner(backend, engine=FakeEngine()).run(job_id) == "skipped"
    totals = _totals(backend)
    (dims, counters), = totals.items()
    assert (dims.status, dims.format, dims.preset, dims.arrival) == ("failed", "avif", "none", "drop")
    assert counters["n"] == 1 and counters["e:corrupt_image"] == 1 and counters["bytes_out"] == 0
    # the reconciler's path (no record at hand) reads the job first
    other = _job(backend, image, {"format": "png"})
    assert backend.records.fail_job(other, "retries_exhausted", "dead letter")
    assert _n(_totals(backend), status="failed") == 2
    assert backend.records.get_job(other)["out_format"] == "png"


def test_deleting_an_image_subtracts_its_jobs(backend):
    keep, gone = _image(backend), _image(backend)
    runner = JobRunner(backend, engine=FakeEngine())
    for image in (keep, gone):
        for recipe in RECIPES[:2]:
            runner.run(_job(backend, image, recipe))
    queued = _job(backend, gone, RECIPES[2])  # not terminal: never counted, deleted plainly
    assert _n(_totals(backend)) == 4
    assert backend.records.delete_image_records(gone["image_id"]) == 4  # image + 3 jobs
    assert backend.records.get_job(queued) is None
    assert _n(_totals(backend)) == 2
    assert rollups.check(backend.records.table)["ok"]


def test_seal_folds_live_items_without_changing_totals(backend):
    image = _image(backend)
    runner = JobRunner(backend, engine=FakeEngine())
    for recipe in RECIPES:
        runner.run(_job(backend, image, recipe))
    table = backend.records.table
    before = _totals(backend)
    assert len(rollups.live_items(table)) >= 1
    assert rollups.seal(table) >= 1
    assert rollups.live_items(table) == []
    assert _totals(backend) == before
    runner.run(_job(backend, image, {"format": "jpeg"}))  # a new live item next to the sealed day
    assert _n(_totals(backend)) == 4 and rollups.check(table)["ok"]
    rollups.seal(table)
    assert _n(_totals(backend)) == 4 and rollups.check(table)["ok"]


def test_seal_refuses_a_live_item_that_changed_after_it_was_read(backend, monkeypatch):
    image = _image(backend)
    runner = JobRunner(backend, engine=FakeEngine())
    runner.run(_job(backend, image, RECIPES[0]))
    table = backend.records.table
    real = rollups.live_items

    def racing(t, *a):
        items = real(t, *a)
        runner.run(_job(backend, image, RECIPES[1]))  # adds to a live item after the read
        return items

    monkeypatch.setattr(rollups, "live_items", racing)
    rollups.seal(table)
    monkeypatch.setattr(rollups, "live_items", real)
    assert _n(_totals(backend)) == 2 and rollups.check(table)["ok"]


def test_backfill_then_check_matches_and_check_sees_drift(backend):
    image = _image(backend)
    runner = JobRunner(backend, engine=FakeEngine())
    for recipe in RECIPES:
        runner.run(_job(backend, image, recipe))
    table = backend.records.table
    rollups.clear(table)
    report = rollups.check(table)
    assert not report["ok"] and report["jobs_scanned"] == 3 and report["jobs_in_rollups"] == 0
    out = rollups.backfill(table)
    assert out["jobs"] == 3
    assert rollups.check(table)["ok"]
    # drift (a counter changed behind the rollups' back) is reported
    d = next(iter(_totals(backend)))
    table.update_item(**rollups.add_update(d, Counter(n=1), shard=1))
    bad = rollups.check(table)
    assert not bad["ok"] and bad["differences"][0]["counter"] == "n"


def _random_totals(rng, days=("2026-01-01", "2026-01-02"), codes=("timeout", "corrupt_image")):
    totals: dict[rollups.Dims, Counter] = {}
    for day in days:
        for status in ("succeeded", "failed"):
            for fmt in ("webp", "jpeg#x"):  # a "#" inside a dimension is escaped in the combo
                c = Counter(n=rng.randint(1, 50), bytes_in=rng.randint(0, 10**12))
                for name in rollups.HISTOGRAMS:
                    c[f"h:{name}:{rng.randint(rollups.MIN_BUCKET, rollups.MAX_BUCKET)}"] += rng.randint(1, 9)
                if status == "failed":
                    c[f"e:{rng.choice(codes)}"] += rng.randint(1, 5)
                totals[rollups.Dims(day, status, fmt, "web", "drop")] = c
    return totals


def test_cells_round_trip_through_a_day_item_and_concat():
    import random

    rng = random.Random(7)
    totals = _random_totals(rng)
    per_day = [rollups.Cells.from_counters({d: c for d, c in totals.items() if d.day == day})
               for day in ("2026-01-01", "2026-01-02")]
    decoded = [rollups.Cells.decode(day, cells.encode())
               for day, cells in zip(("2026-01-01", "2026-01-02"), per_day, strict=True)]
    # a part whose error codes are numbered differently: concat renumbers them
    other = rollups.Cells.from_counters({rollups.Dims("2026-01-02", "failed", "png", "none", "direct"):
                                         Counter({"n": 2, "e:zzz": 1, "e:corrupt_image": 1})})
    both = rollups.Cells.concat([*decoded, other])
    expected = {**totals, **other.to_counters()}
    assert both.to_counters() == expected
    assert sorted(both.codes) == sorted({k[2:] for c in expected.values() for k in c if k.startswith("e:")})
    with pytest.raises(ValueError):
        rollups.Cells.from_counters({rollups.Dims("2026-01-01", "failed", "png", "none", "direct"):
                                     Counter({"surprise": 1})})


def test_a_format_1_day_item_is_read_and_sealed_into_columns(backend):
    table = backend.records.table
    dims = rollups.Dims("2026-02-03", "succeeded", "webp", "web", "presigned")
    old = {"n": 3, "bytes_in": 300, "bytes_out": 30, "h:ratio:13": 3}
    table.put_item(Item={"pk": rollups.DAY_PK, "sk": dims.day, "ver": 1,
                         "data": json.dumps({dims.combo(): old})})
    assert _totals(backend) == {dims: Counter(old)}
    # one more job's live add, then a seal rewrites the day in format 2
    table.update_item(**rollups.add_update(dims, Counter(n=1, bytes_in=100, bytes_out=10), shard=1))
    assert rollups.seal(table) == 1
    item = table.get_item(Key={"pk": rollups.DAY_PK, "sk": dims.day})["Item"]
    assert item["fmt"] == rollups.DAY_FORMAT and "data" not in item and item["ver"] == 2
    assert _totals(backend) == {dims: Counter({"n": 4, "bytes_in": 400, "bytes_out": 40, "h:ratio:13": 3})}


@pytest.mark.parametrize(("values", "width"), [([], 1), ([-128, 127], 1), ([-129], 2), ([40_000], 4),
                                               ([0, 2**40], 8), ([-(2**63)], 8)])
def test_day_item_arrays_take_the_narrowest_type(values, width):
    import numpy as np

    narrowed = rollups._narrow(np.array(values, np.int64))
    assert narrowed.dtype.itemsize == width and narrowed.tolist() == values


def test_reads_decode_a_day_item_once_until_it_changes(backend):
    table = backend.records.table
    cache = rollups.DayCache(max_cells=10_000)
    d1 = rollups.Dims("2026-03-01", "succeeded", "webp", "web", "presigned")
    d2 = rollups.Dims("2026-03-02", "succeeded", "avif", "web", "drop")
    written = {d1: Counter(n=2, bytes_in=20), d2: Counter(n=1, bytes_in=5)}
    rollups.add_days(table, written)
    first = rollups.read(table, "2026-03-01", "2026-03-02", cache=cache)
    assert first.fetched == 2 and first.totals == written
    again = rollups.read(table, "2026-03-01", "2026-03-02", cache=cache)
    assert again.fetched == 0 and again.totals == first.totals
    # a seal rewrites one day (new gen): only that day is fetched again, and its new counts are seen
    table.update_item(**rollups.add_update(d2, Counter(n=3, bytes_in=30), shard=2))
    live = rollups.read(table, "2026-03-01", "2026-03-02", cache=cache)
    assert live.fetched == 0 and live.live_items == 1 and live.totals[d2] == Counter(n=4, bytes_in=35)
    rollups.seal(table)
    sealed = rollups.read(table, "2026-03-01", "2026-03-02", cache=cache)
    assert sealed.fetched == 1 and sealed.live_items == 0 and sealed.totals == live.totals
    # a read without the cache fetches everything and agrees
    assert rollups.read(table, "2026-03-01", "2026-03-02", cache=None).totals == sealed.totals


def test_the_day_cache_is_bounded_by_cells():
    def cells(n: int) -> rollups.Cells:
        return rollups.Cells.from_counters({rollups.Dims("2026-01-01", "failed", "png", "none", "direct"):
                                            Counter({f"e:c{i}": 1 for i in range(n)})})

    cache = rollups.DayCache(max_cells=10)
    cache.put("a", cells(4))
    cache.put("b", cells(4))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", cells(4))  # 12 cells > 10: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    cache.put("huge", cells(11))  # larger than the whole cache: not kept
    assert cache.get("huge") is None and cache.get(None) is None
    off = rollups.DayCache(max_cells=0)
    off.put("empty", rollups.Cells.empty())
    assert off.get("empty") is None
