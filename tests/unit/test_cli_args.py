"""Batch CLI: flags and --recipe → recipe dict, output naming, discovery, report/summary helpers."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest

from imagepipe.core.recipe import parse_recipe
from pipeline.cli import assign_stems, discover
from pipeline.cli_args import UsageError, build_parser, load_recipe_file, recipe_from_args
from pipeline.cli_output import Progress, csv_rows, format_table, totals, write_report


def _recipe(*flags: str, base: dict | None = None) -> dict:
    args = build_parser().parse_args(["in.jpg", "--out", "o", *flags])
    return recipe_from_args(args, base)


def test_no_flags_is_the_empty_recipe():
    assert _recipe() == {}
    assert parse_recipe(_recipe()).recipe_hash() == parse_recipe({}).recipe_hash()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--format", "webp"], {"format": "webp"}),
        (["--quality", "70"], {"quality": 70}),
        (["--quality", "auto", "--max-bytes", "50000"], {"quality": "auto", "max_bytes": 50000}),
        (["--width", "800"], {"resize": {"width": 800}}),
        (["--width", "800", "--height", "600", "--fit", "cover", "--filter", "bicubic", "--upscale"],
         {"resize": {"width": 800, "height": 600, "fit": "cover", "filter": "bicubic", "upscale": True}}),
        (["--height", "10", "--no-upscale"], {"resize": {"height": 10, "upscale": False}}),
        (["--strip"], {"metadata": "strip"}),
        (["--keep-metadata"], {"metadata": "keep"}),
        (["--keep-copyright-icc"], {"metadata": "keep_copyright_icc"}),
        (["--color", "keep", "--background", "#000"], {"color": "keep", "background": "#000"}),
        (["--grayscale", "--sharpen", "1.5", "--blur", "0.5"],
         {"ops": {"grayscale": True, "sharpen": 1.5, "blur": 0.5}}),
        (["--no-progressive", "--optimize", "--subsampling", "4:4:4"],
         {"jpeg": {"progressive": False, "optimize": True, "subsampling": "4:4:4"}}),
        (["--webp-method", "6", "--lossless"], {"webp": {"method": 6, "lossless": True}}),
        (["--avif-speed", "8"], {"avif": {"speed": 8}}),
        (["--format", "jpeg", "--jpeg-encoder", "mozjpeg"],
         {"format": "jpeg", "jpeg": {"encoder": "mozjpeg"}}),
        (["--format", "jpeg", "--jpeg-encoder", "mozjpeg", "--quant-table", "2"],
         {"format": "jpeg", "jpeg": {"encoder": "mozjpeg", "quant_table": 2}}),
        (["--jpeg-encoder", "mozjpeg", "--quant-table", "auto", "--target-ssimulacra2", "70"],
         {"jpeg": {"encoder": "mozjpeg", "quant_table": "auto"}, "quality": "auto",
          "target": {"metric": "ssimulacra2", "min": 70.0}}),
        (["--format", "jxl", "--jxl-effort", "5", "--jxl-lossless"],
         {"format": "jxl", "jxl": {"effort": 5, "lossless": True}}),
        (["--png-compress-level", "9", "--palette", "--colors", "64"],
         {"png": {"compress_level": 9, "palette": True, "colors": 64}}),
        (["--watermark-text", "© me", "--watermark-position", "tiled", "--watermark-opacity", "0.3",
          "--watermark-scale", "0.1", "--watermark-margin", "0.05"],
         {"watermark": {"text": "© me", "position": "tiled", "opacity": 0.3, "scale": 0.1, "margin": 0.05}}),
        (["--keep-animation", "--max-frames", "20"], {"animation": {"keep": True, "max_frames": 20}}),
        (["--target-ssim", "0.95"], {"quality": "auto", "target": {"metric": "ssim", "min": 0.95}}),
        (["--target-ssimulacra2", "70"],
         {"quality": "auto", "target": {"metric": "ssimulacra2", "min": 70.0}}),
    ],
)
def test_flag_maps_to_recipe_field(flags, expected):
    recipe = _recipe(*flags)
    assert recipe == expected
    parse_recipe(recipe)  # every mapped recipe is valid for the engine's model


def test_flags_override_recipe_file_fields_and_keep_the_rest():
    base = {"format": "png", "quality": 90, "resize": {"width": 100, "height": 100, "fit": "cover"}}
    recipe = _recipe("--format", "jpeg", "--width", "300", base=base)
    assert recipe == {"format": "jpeg", "quality": 90,
                      "resize": {"width": 300, "height": 100, "fit": "cover"}}
    assert base["resize"]["width"] == 100  # the base is not mutated


def test_flag_fills_a_null_section_of_the_recipe_file():
    assert _recipe("--width", "64", base={"resize": None}) == {"resize": {"width": 64}}


def test_watermark_image_is_base64_of_the_file(tmp_path):
    mark = tmp_path / "mark.png"
    mark.write_bytes(b"\x89PNG fake")
    recipe = _recipe("--watermark-image", str(mark))
    assert base64.b64decode(recipe["watermark"]["image_b64"]) == b"\x89PNG fake"


def test_missing_watermark_image_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="watermark"):
        _recipe("--watermark-image", str(tmp_path / "nope.png"))


def test_bad_quality_text_is_rejected_by_the_parser():
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["a.jpg", "--out", "o", "--quality", "high"])
    assert exc.value.code == 2


def test_metadata_flags_are_mutually_exclusive():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["a.jpg", "--out", "o", "--strip", "--keep-metadata"])


def test_recipe_file_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        load_recipe_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_recipe_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(UsageError, match="JSON object"):
        load_recipe_file(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"format": "webp"}))
    assert load_recipe_file(good) == {"format": "webp"}


def test_stems_are_unique_case_insensitively_and_stable():
    srcs = [Path("a/photo.jpg"), Path("b/photo.png"), Path("c/PHOTO.webp"), Path("d/other.gif"),
            Path("e/photo-2.jpg")]
    assert assign_stems(srcs) == ["photo", "photo-2", "PHOTO-3", "other", "photo-2-2"]


def test_discover_walks_folders_for_images_only_and_skips_out_and_hidden(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / ".hidden").mkdir()
    for rel in ["in/a.JPG", "in/sub/b.png", "in/sub/c.webp", "in/notes.txt", "in/.hidden/d.png", "in/.e.png"]:
        (tmp_path / rel).write_bytes(b"x")
    out = tmp_path / "in" / "out"
    out.mkdir()
    (out / "old.jpg").write_bytes(b"x")
    explicit = tmp_path / "in" / "notes.txt"  # a file named explicitly is taken whatever its extension
    found = discover([str(tmp_path / "in"), str(explicit), str(tmp_path / "in" / "a.JPG")], out)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "in/a.JPG", "in/sub/b.png", "in/sub/c.webp", "in/notes.txt"]


def test_discover_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        discover([str(tmp_path / "missing")], tmp_path / "out")


def _records() -> list[dict]:
    facts = {"input": {"format": "JPEG", "width": 100, "height": 50, "bytes": 4000},
             "output": {"format": "WEBP", "width": 50, "height": 25, "bytes": 1000},
             "compression_ratio": 4.0, "metrics": {"ssim": 0.98, "psnr": 40.0},
             "timings_ms": {"decode": 1.0, "total": 3.0}}
    return [
        {"input": "a.jpg", "output": "out/a.webp", "status": "ok", "facts": facts, "elapsed_ms": 3.0},
        {"input": "bad.png", "output": None, "status": "failed",
         "error": {"code": "corrupt_image", "message": "truncated"}, "elapsed_ms": 1.0},
    ]


def test_totals_count_failures_and_bytes():
    t = totals(_records(), 2.0)
    assert (t["files"], t["ok"], t["failed"], t["bytes_in"], t["bytes_out"]) == (2, 1, 1, 4000, 1000)
    assert t["saved_pct"] == 75.0


def test_csv_report_flattens_facts_and_keeps_error_code(tmp_path):
    columns, _ = csv_rows(_records())
    expected = {"input", "status", "error_code", "input.width", "metrics.ssim", "timings_ms.total"}
    assert expected <= set(columns)
    path = tmp_path / "facts.csv"
    write_report(path, _records(), totals(_records(), 1.0), {})
    rows = list(csv.DictReader(path.open()))
    assert rows[0]["output.format"] == "WEBP" and rows[0]["error_code"] == ""
    assert rows[1]["error_code"] == "corrupt_image" and rows[1]["status"] == "failed"


def test_json_report_has_summary_recipe_and_files(tmp_path):
    path = tmp_path / "r" / "facts.json"
    write_report(path, _records(), totals(_records(), 1.0), {"format": "webp"})
    body = json.loads(path.read_text())
    assert body["summary"]["failed"] == 1 and body["recipe"] == {"format": "webp"}
    assert body["files"][1]["error"]["code"] == "corrupt_image"


def test_progress_is_silent_off_a_tty_and_draws_on_one():
    quiet = io.StringIO()
    p = Progress(3, stream=quiet)  # StringIO is not a TTY
    p.advance(True, "a.jpg")
    p.close()
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    p = Progress(2, stream=loud, enabled=True)
    p.advance(True, "a.jpg")
    p.advance(False, "b.jpg")
    p.close()
    assert "2/2" in loud.getvalue() and "failed 1" in loud.getvalue() and loud.getvalue().endswith("\n")


def test_format_table_pads_columns():
    text = format_table(["a", "bbb"], [["xxxx", "y"]])
    lines = text.splitlines()
    assert lines[0] == "a     bbb" and lines[2] == "xxxx  y"


def test_preset_is_the_base_the_flags_override():
    from pipeline.cli_args import preset_recipe
    from pipeline.presets import PRESETS

    args = build_parser().parse_args(["in.jpg", "--out", "o", "--preset", "AVIF 2048", "--quality", "40"])
    recipe = recipe_from_args(args, preset_recipe(args.preset))
    assert recipe["format"] == "avif" and recipe["quality"] == 40
    assert recipe["resize"] == PRESETS["AVIF 2048"]["resize"]
    assert preset_recipe("avif-2048") == PRESETS["AVIF 2048"]  # the slug id, as the API takes it
    with pytest.raises(UsageError, match="unknown preset"):
        preset_recipe("nope")
