"""pipeline.lab: Pareto frontier (checked against a brute-force definition), recommendations,
deltas, batch report rows, aggregation and CSV export."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline import lab


def _pt(fmt: str, q: int | None, b: int, ssim: float, **kw: Any) -> dict[str, Any]:
    return {"format": fmt, "quality": q, "bytes": b, "ssim": ssim, "psnr": 30 + 10 * ssim, "bpp": b / 1000,
            "label": f"{fmt}-q{q}" + "".join(f"-{v}" for v in kw.values()), **kw}


def _dominated(p: dict[str, Any], pts: list[dict[str, Any]]) -> bool:
    return any(o is not p and o["bytes"] <= p["bytes"] and o["ssim"] >= p["ssim"]
               and (o["bytes"] < p["bytes"] or o["ssim"] > p["ssim"]) for o in pts)


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=30))
def test_pareto_frontier_matches_brute_force(pairs: list[tuple[int, int]]) -> None:
    pts = [_pt("jpeg", i, b, s / 20) for i, (b, s) in enumerate(pairs)]
    front = lab.pareto_frontier(pts)
    ids = {id(p) for p in front}
    for p in pts:
        if _dominated(p, pts):
            assert id(p) not in ids
    # every non-dominated (size, score) pair is represented exactly once
    want = {(p["bytes"], p["ssim"]) for p in pts if not _dominated(p, pts)}
    assert sorted((p["bytes"], p["ssim"]) for p in front) == sorted(want)
    assert [p["bytes"] for p in front] == sorted(p["bytes"] for p in front)


def test_recommend_cheapest_per_format_meeting_target() -> None:
    pts = [_pt("jpeg", 60, 9000, 0.95), _pt("jpeg", 80, 14000, 0.97), _pt("jpeg", 90, 20000, 0.98),
           _pt("webp", 60, 7000, 0.955), _pt("webp", 80, 9000, 0.972),
           _pt("avif", 50, 5000, 0.96), _pt("avif", 70, 8000, 0.969)]
    random.Random(1).shuffle(pts)
    df = lab.recommend(pts, "ssim", 0.97)
    assert list(df["format"]) == ["webp", "jpeg", "avif"]
    assert list(df["meets"]) == [True, True, False]
    assert df.loc[0, "setting"] == "webp q80" and df.loc[0, "bytes"] == 9000
    assert df.loc[1, "setting"] == "jpeg q80" and df.loc[1, "vs_cheapest"] == round(14000 / 9000, 3)
    assert "none reaches 0.97" in df.loc[2, "setting"] and df.loc[2, "ssim"] == 0.969


def test_points_frame_marks_pareto_and_labels_options() -> None:
    pts = [_pt("webp", 80, 9000, 0.97, option_name="webp.method", option_value=6),
           _pt("webp", 80, 9500, 0.969, option_name="webp.method", option_value=2),
           _pt("png", None, 90000, 1.0)]
    df = lab.points_frame(pts)
    assert list(df["setting"]) == ["webp q80 method=6", "webp q80 method=2", "png lossless"]
    assert list(df["pareto"]) == [True, False, True]
    assert lab.points_frame([]).empty


def test_point_delta() -> None:
    d = lab.point_delta(_pt("jpeg", 80, 10000, 0.96), _pt("avif", 60, 6000, 0.965))
    assert d["bytes"] == -4000 and d["bytes_pct"] == -40.0 and d["ssim"] == 0.005


def test_report_rows_aggregate_and_csv() -> None:
    imgs = [{"image_id": "a" * 32, "filename": "a.jpg", "bytes": 100_000},
            {"image_id": "b" * 32, "filename": "b,\"x\".jpg", "bytes": 50_000}]
    jobs = {("a", "web"): {"status": "succeeded", "job_id": "ja", "result": {
                "original_bytes": 100_000, "bytes": 20_000, "format": "webp", "ssim": 0.97, "psnr": 40.0}},
            ("b", "web"): {"status": "succeeded", "job_id": "jb", "result": {
                "original_bytes": 50_000, "bytes": 30_000, "format": "webp", "ssim": 0.95, "psnr": 38.0}},
            ("a", "thumb"): {"status": "failed", "job_id": "jc", "error": {"code": "corrupt_image"}},
            ("b", "thumb"): {"status": "succeeded", "job_id": "jd", "result": {
                "original_bytes": 50_000, "bytes": 5_000, "format": "jpeg", "ssim": 0.9, "psnr": 33.0}}}
    rows = [lab.report_row(im, p, jobs[(im["image_id"][0], p)]) for p in ("web", "thumb") for im in imgs]
    assert rows[0]["saved_pct"] == 80.0
    assert rows[2]["error"] == "corrupt_image" and rows[2]["saved_pct"] is None
    agg = lab.aggregate(rows).set_index("preset")
    assert agg.loc["web", "saved_pct"] == round(100 * (1 - 50_000 / 150_000), 2)
    assert agg.loc["web", "median_ssim"] == 0.96 and agg.loc["web", "min_ssim"] == 0.95
    assert agg.loc["thumb", "failed"] == 1 and agg.loc["thumb", "saved_pct"] == 90.0
    parsed = list(csv.DictReader(io.StringIO(lab.to_csv(rows))))
    assert len(parsed) == 4 and parsed[1]["filename"] == 'b,"x".jpg' and parsed[0]["output_bytes"] == "20000"
    assert list(parsed[0]) == lab.REPORT_COLUMNS


def test_aggregate_with_a_succeeded_row_of_unknown_original_size() -> None:
    """A job result without original_bytes for an image listed without bytes: no saving for that
    row (saved_pct None), and the per-preset medians are taken over the rows that have one."""
    job = {"status": "succeeded", "job_id": "j", "result": {"bytes": 4_000, "ssim": 0.9}}
    rows = [lab.report_row({"image_id": "a" * 32}, "web", job),
            lab.report_row({"image_id": "b" * 32, "bytes": 10_000}, "web", job)]
    assert rows[0]["saved_pct"] is None
    agg = lab.aggregate(rows).set_index("preset")
    assert agg.loc["web", "median_saved_pct"] == 60.0 and agg.loc["web", "failed"] == 0
    # the overall saving and its totals only count rows whose original size is known
    assert agg.loc["web", "saved_pct"] == 60.0
    assert (agg.loc["web", "original_bytes"], agg.loc["web", "output_bytes"]) == (10_000, 4_000)


class _FakeClient:
    """Records calls; jobs finish immediately (batch_report's own logic is what is tested here;
    the real client path is covered by the Compare page test through the local stack)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def process_many(self, items: Any) -> list[dict[str, Any]]:
        out = []
        for it in items:
            self.calls.append((it["image_id"], str(it.get("preset"))))
            if it["image_id"] == "gone":  # refused at submission, as POST /jobs/batch reports it
                out.append({"image_id": "gone", "error": {"code": "not_found", "message": "no image"}})
            else:
                out.append({"job_id": f"{it['image_id']}:{it.get('preset')}"})
        return out

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        assert timeout > 0
        return {"job_id": job_id, "status": "succeeded", "result": {"original_bytes": 1000, "bytes": 400}}


def test_batch_report_runs_every_image_preset_pair() -> None:
    fc = _FakeClient()
    seen: list[tuple[int, int]] = []
    rows = lab.batch_report(fc, [{"image_id": "x"}, {"image_id": "y"}], {"p1": {}, "p2": {"quality": 50}},
                            on_progress=lambda i, n: seen.append((i, n)))
    assert fc.calls == [("x", "p1"), ("x", "p2"), ("y", "p1"), ("y", "p2")]
    assert [r["saved_pct"] for r in rows] == [60.0] * 4 and seen[-1] == (4, 4)


def test_batch_report_keeps_items_refused_at_submission_as_failed_rows() -> None:
    fc = _FakeClient()
    rows = lab.batch_report(fc, [{"image_id": "x"}, {"image_id": "gone"}], {"p1": {}})
    assert [(r["image_id"], r["status"], r["error"]) for r in rows] == [
        ("x", "succeeded", None), ("gone", "failed", "not_found")]
