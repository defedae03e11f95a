"""Unit tests of the dashboard's pure helpers: presets, cost model, image composition, analytics."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image

from imagepipe.core import process
from imagepipe.core.recipe import Recipe, parse_recipe
from pages.ui import analytics, imaging
from pages.ui.recipe_panel import recipe_to_state, state_to_recipe
from pages.ui.widgets import describe_choice, job_facts, md_escape, safe_code
from pipeline import cost
from pipeline.presets import PRESETS, get_preset, preset_hashes
from tests.unit.imagegen import photo_bytes


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --- presets and the recipe panel ---------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_recipe_and_survives_the_panel(name: str) -> None:
    recipe = parse_recipe(get_preset(name))
    back = state_to_recipe(recipe_to_state(get_preset(name)))
    assert parse_recipe(back).recipe_hash() == recipe.recipe_hash()


def test_preset_hashes_are_distinct_and_get_preset_returns_copies() -> None:
    assert len(preset_hashes()) == len(PRESETS)
    a = get_preset("Web 1600 WebP")
    a["quality"] = 1
    assert get_preset("Web 1600 WebP")["quality"] == 80


def test_panel_builds_watermark_and_auto_quality() -> None:
    state = recipe_to_state({})
    state.update(
        {
            "rp.wm.kind": "text",
            "rp.wm.text": "hello",
            "rp.wm.position": "tiled",
            "rp.quality.auto": True,
            "rp.goal": "target",
            "rp.target.min": 0.97,
        }
    )
    recipe = parse_recipe(state_to_recipe(state))
    assert recipe.watermark is not None and recipe.watermark.text == "hello"
    assert recipe.watermark.position == "tiled"
    assert recipe.quality == "auto" and recipe.target is not None and recipe.target.min == 0.97


# --- cost ------------------------------------------------------------------------------------


def test_cost_estimate_matches_hand_computation() -> None:
    est = cost.estimate_per_1000([99.2, 200.0], memory_mb=1024)
    # billed 100 ms and 200 ms -> mean 150 ms; 1000 images × 1 GB × 0.15 s
    assert est.mean_billed_ms == 150
    assert math.isclose(est.lambda_compute, 150 * cost.LAMBDA_ARM64_PRICE_PER_GB_S)
    assert math.isclose(est.lambda_requests, 1000 * cost.LAMBDA_INVOCATIONS_PER_IMAGE * 0.20 / 1e6)
    assert math.isclose(est.s3_put, 1000 * cost.S3_PUTS_PER_IMAGE * 0.005 / 1000)
    assert math.isclose(est.total, est.lambda_compute + est.lambda_requests + est.s3_put + est.s3_get)
    assert cost.estimate_per_1000([150.0], memory_mb=2048).lambda_compute == pytest.approx(
        2 * est.lambda_compute
    )


def test_cost_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        cost.estimate_per_1000([], 1024)
    with pytest.raises(ValueError):
        cost.estimate_per_1000([10.0], 64)


def test_processor_duration_prefers_service_total() -> None:
    assert (
        cost.processor_duration_ms({"total": 50.0, "service_total": 80.0}) == 80.0 + cost.SERVICE_OVERHEAD_MS
    )
    assert cost.processor_duration_ms({"total": 50.0}) == 50.0 + cost.ENGINE_ONLY_OVERHEAD_MS
    assert cost.processor_duration_ms({}) is None


# --- imaging --------------------------------------------------------------------------------


def test_wipe_puts_original_left_and_output_right() -> None:
    red = _png(Image.new("RGB", (200, 100), (255, 0, 0)))
    blue = _png(Image.new("RGB", (100, 50), (0, 0, 255)))
    pair = imaging.make_pair(red, blue)
    assert pair.before.size == pair.after.size == (100, 50)
    out = imaging.wipe(pair, 0.3)
    assert out.getpixel((5, 25)) == (255, 0, 0)
    assert out.getpixel((95, 25)) == (0, 0, 255)


def test_checkerboard_behind_transparency() -> None:
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    shown = imaging.on_checkerboard(clear, cell=10)
    assert shown.mode == "RGB"
    assert shown.getpixel((1, 1)) == imaging.CHECKER_LIGHT
    assert shown.getpixel((11, 1)) == imaging.CHECKER_DARK
    opaque = Image.new("RGB", (10, 10), (1, 2, 3))
    assert imaging.on_checkerboard(opaque).getpixel((0, 0)) == (1, 2, 3)


def test_crop_box_is_clamped_and_zoom_is_nearest() -> None:
    assert imaging.crop_box((100, 80), 0.0, 1.0, 64) == (0, 16, 64, 80)
    assert imaging.crop_box((30, 30), 0.5, 0.5, 64) == (0, 0, 30, 30)
    img = Image.new("RGB", (4, 4), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    z = imaging.zoom(img, (0, 0, 2, 2), 3)
    assert z.size == (6, 6)
    assert z.getpixel((2, 2)) == (255, 255, 255) and z.getpixel((3, 3)) == (0, 0, 0)


def test_preview_refuses_garbage() -> None:
    with pytest.raises(imaging.PreviewError):
        imaging.open_first_frame(b"definitely not an image")


# --- text safety ---------------------------------------------------------------------------


def test_md_escape_and_safe_code() -> None:
    assert md_escape("**x** [a](b) <b>") == r"\*\*x\*\* \[a\]\(b\) \<b\>"
    assert safe_code("corrupt_image") == "corrupt_image"
    assert safe_code("<script>") == "script"
    assert safe_code("") == "unknown_error"


# --- analytics -------------------------------------------------------------------------------


def _job(i: int, status: str = "succeeded", fmt: str = "webp", **extra: object) -> dict:
    job = {
        "job_id": f"{i:032x}-{'ab' * 8}",
        "image_id": f"{i:032x}",
        "status": status,
        "created_at": f"2026-01-0{1 + i % 3}T10:00:00.000000Z",
        "result": {
            "format": fmt,
            "width": 100,
            "height": 50,
            "bytes": 1000,
            "original_bytes": 4000,
            "compression_ratio": 4.0,
            "ssim": 0.98,
            "psnr": 40.0,
            "timings_ms": {"decode": 1.0 + i, "encode": 2.0, "total": 5.0 + i, "service_total": 9.0},
        },
        "facts": {"input": {"format": "JPEG", "width": 2000, "height": 1000, "bytes": 4000}},
    }
    if status == "failed":
        job.pop("result")
        job["error"] = {"code": "corrupt_image", "message": "bad"}
    job.update(extra)
    return job


def test_jobs_frame_derives_columns() -> None:
    jobs = [_job(0), _job(1, fmt="avif", preset="AVIF 2048"), _job(2, status="failed")]
    images = [{"image_id": f"{i:032x}", "filename": f"f{i}.jpg"} for i in range(3)]
    df = analytics.jobs_frame(jobs, images, {"ab" * 8: "Web 1600 WebP"})
    assert len(df) == 3
    row = df[df["job_id"] == jobs[0]["job_id"]].iloc[0]
    assert row["saved_pct"] == pytest.approx(75.0)
    assert row["input_mp"] == pytest.approx(2.0)
    assert row["bpp"] == pytest.approx(1000 * 8 / 5000)
    assert row["preset"] == "Web 1600 WebP" and row["filename"] == "f0.jpg"
    assert set(df["preset"]) == {"Web 1600 WebP", "AVIF 2048"}


def test_jobs_frame_empty_has_columns() -> None:
    df = analytics.jobs_frame([], [])
    assert list(df.columns) == analytics.JOB_COLUMNS and df.empty


def test_job_facts_from_result() -> None:
    facts = job_facts(_job(0))
    assert facts["saved_pct"] == pytest.approx(75.0)
    assert facts["ratio"] == 4.0 and facts["input_width"] == 2000
    assert Recipe().recipe_hash()  # the engine model is importable where the pages run


def test_the_facts_panel_says_what_an_auto_search_chose() -> None:
    recipe = {"format": "jpeg", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 60},
              "jpeg": {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": "auto"}}
    r = process(photo_bytes(160, 100, "png", seed=3), recipe)
    chosen = job_facts({"facts": r.facts})["chosen"]
    text = describe_choice(chosen)
    assert text.startswith("auto: jpeg:mozjpeg q") and f"q{chosen['quality']}," in text
    assert chosen["subsampling"] in text and f"table {chosen['quant_table']}" in text
    assert describe_choice(job_facts(_job(0))["chosen"]) == ""  # a fixed-quality job: nothing


def test_panel_round_trips_the_encoder_fields() -> None:
    raw = {"format": "best", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 80},
           "jpeg": {"encoder": "mozjpeg"}, "avif": {"subsampling": "4:4:4"},
           "jxl": {"effort": 5, "lossless": False}, "candidates": ["jpeg", "avif", "jxl"]}
    back = parse_recipe(state_to_recipe(recipe_to_state(raw)))
    assert back == parse_recipe(raw)
    assert back.recipe_hash() == parse_recipe(raw).recipe_hash()
    tuned = {**raw, "jpeg": {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": 2}}
    assert parse_recipe(state_to_recipe(recipe_to_state(tuned))) == parse_recipe(tuned)
    searched = {**raw, "jpeg": {"encoder": "mozjpeg", "quant_table": "auto"}}
    assert parse_recipe(state_to_recipe(recipe_to_state(searched))) == parse_recipe(searched)


def test_system_preset_rows_show_the_slug_id_and_a_non_default_jpeg_encoder() -> None:
    from imagepipe.service.presets import load_catalog
    from pages.system import preset_rows

    rows = {r["id"]: r for r in preset_rows(load_catalog({}).public())}
    assert rows["web-1600-webp"]["preset"] == "Web 1600 WebP (default)"
    thumb = load_catalog({}).get("thumbnail-320-jpeg").recipe
    encoder = thumb["jpeg"].get("encoder", "turbo")
    assert (f"({encoder})" in rows["thumbnail-320-jpeg"]["recipe"]) == (encoder != "turbo")


def test_stage_quantiles_from_stats_feed_the_timings_chart() -> None:
    stats = {"distributions": {"ms_decode": {"p50": 1.5, "p95": 4.0}, "ms_encode": {"p50": 2.0, "p95": 3.0},
                               "compression_ratio": {"p50": 3.0, "p95": 9.0}}}
    frame = analytics.stage_quantiles_frame(stats)
    assert frame.to_dict("records") == [
        {"stage": "decode", "quantile": "p50", "ms": 1.5}, {"stage": "decode", "quantile": "p95", "ms": 4.0},
        {"stage": "encode", "quantile": "p50", "ms": 2.0}, {"stage": "encode", "quantile": "p95", "ms": 3.0}]
    assert analytics.chart_timings(frame).to_dict()["data"]
