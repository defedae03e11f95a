"""The seeding tool and GET /stats' answer: seeded rollups equal a full scan, the answer's
counts and sums are exact, its quantiles within the stated bucket error of the exact ones."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from imagepipe.errors import BadRequest
from imagepipe.service import rollups, stats
from pipeline.seed import seed, synthetic_jobs
from tests.unit.service_env import mocked_backend


@pytest.fixture(scope="module")
def seeded():
    with mocked_backend() as b:
        out = seed(b.records.table, 600, days=30, seed=7)
        jobs = list(synthetic_jobs(600, days=30, seed=7))
        yield b, out, jobs


def test_seeded_rollups_equal_a_full_scan(seeded):
    backend, out, jobs = seeded
    assert out["jobs"] == 600 and 28 <= out["days"] <= 31
    report = rollups.check(backend.records.table)
    assert report["ok"], report["differences"][:3]
    assert report["jobs_scanned"] == 600


def test_stats_answer_is_exact_and_quantiles_within_the_bucket_error(seeded):
    backend, _, jobs = seeded
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=40)).isoformat()
    body = stats.get_stats(backend, {"from": start, "to": today.isoformat()})
    ok = [j for j in jobs if j["status"] == "succeeded"]
    t = body["totals"]
    assert t["jobs"] == 600 and t["succeeded"] == len(ok) and t["failed"] == 600 - len(ok)
    assert t["bytes_in"] == sum(j["result"]["original_bytes"] for j in ok)
    assert t["bytes_saved"] == sum(j["result"]["original_bytes"] - j["result"]["bytes"] for j in ok)
    assert sum(e["jobs"] for e in body["errors"]) == t["failed"]
    assert sum(d["jobs"] for d in body["days"]) == 600
    ratios = sorted(j["result"]["compression_ratio"] for j in ok)
    for q in (0.05, 0.5, 0.95):
        exact = ratios[max(1, math.ceil(q * len(ratios))) - 1]
        got = body["distributions"]["compression_ratio"][f"p{round(q * 100)}"]
        assert abs(got / exact - 1) <= body["bucket_error"] + 1e-9, (q, got, exact)
    ssims = sorted(j["result"]["ssim"] for j in ok)
    exact = ssims[max(1, math.ceil(0.5 * len(ssims))) - 1]
    got = body["distributions"]["ssim"]["p50"]
    assert abs((1 - got) / (1 - exact) - 1) <= body["bucket_error"] + 1e-6


def test_stats_filters(seeded):
    backend, _, jobs = seeded
    today = datetime.now(UTC).date().isoformat()
    start = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()
    body = stats.get_stats(backend, {"from": start, "to": today, "format": "jpeg,avif", "arrival": "drop",
                                     "status": "succeeded"})
    want = [j for j in jobs if j["status"] == "succeeded" and j["out_format"] in ("jpeg", "avif")
            and j["arrival"] == "drop"]
    assert body["totals"]["jobs"] == len(want) > 0
    none = stats.get_stats(backend, {"from": start, "to": today, "preset": "none"})
    assert none["totals"]["jobs"] == sum(1 for j in jobs if j["preset"] is None)
    day = jobs[0]["created_at"][:10]
    one = stats.get_stats(backend, {"from": day, "to": day})
    assert one["totals"]["jobs"] == sum(1 for j in jobs if j["created_at"][:10] == day)


@pytest.mark.parametrize("query", [{"from": "2026-13-01"}, {"from": "yesterday"},
                                   {"from": "2026-02-01", "to": "2026-01-01"},
                                   {"from": "1990-01-01", "to": "2026-01-01"}, {"status": ","}])
def test_bad_filters_are_400(query):
    with pytest.raises(BadRequest):
        stats.parse_filters(query)


def test_seeded_jobs_carry_their_input_like_real_ones(seeded):
    """The job table's input columns (format, size) are filled for seeded jobs too: each succeeded
    job's facts hold its input, stored as real jobs store them and read back the same."""
    backend, _, jobs = seeded
    ok = [j for j in jobs if j["status"] == "succeeded"]
    stored = backend.records.get_job(ok[0]["job_id"])
    assert stored["facts"] == ok[0]["facts"]
    for job in ok:
        inp = job["facts"]["input"]
        assert inp["format"] == "jpeg" and inp["bytes"] == job["result"]["original_bytes"]
        assert inp["width"] >= job["result"]["width"] and inp["height"] >= job["result"]["height"]
    assert len({j["facts"]["input"]["width"] for j in ok}) > 1
