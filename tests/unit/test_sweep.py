"""core.sweep: grid validation, one point per cell, parts that cover the grid once, points equal
to independent ``process()`` runs, and the monotone trends that must hold on photo-like images."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from imagepipe.core import process
from imagepipe.core.sweep import (
    MAX_CELLS,
    MAX_FORMATS,
    MAX_QUALITIES,
    Cell,
    parse_grid,
    plan_parts,
    sweep,
)
from imagepipe.errors import InvalidRecipe
from tests.unit import imagegen as g

SRC = g.photo_bytes(240, 160, "png", seed=5)
GRID = {"formats": ["jpeg", "webp", "avif", "png"], "qualities": [20, 40, 60, 80, 95],
        "option": {"name": "webp.method", "values": [2, 6]}}


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return sweep(SRC, GRID)


def test_one_point_per_grid_cell(result: dict[str, Any]) -> None:
    pts = result["points"]
    keys = Counter((p["format"], p["quality"], p["option_value"]) for p in pts)
    expected = ({("jpeg", q, None) for q in GRID["qualities"]}
                | {("avif", q, None) for q in GRID["qualities"]}
                | {("webp", q, m) for q in GRID["qualities"] for m in (2, 6)}
                | {("png", None, None)})
    assert set(keys) == expected and all(n == 1 for n in keys.values())
    for p in pts:
        assert p["bytes"] > 0 and 0 < p["ssim"] <= 1 and p["psnr"] > 0 and p["encode_ms"] >= 0
        assert p["bpp"] == pytest.approx(p["bytes"] * 8 / (240 * 160), rel=1e-3)
        assert p["option_name"] == ("webp.method" if p["format"] == "webp" else None)
    assert len({p["label"] for p in pts}) == len(pts)
    png = next(p for p in pts if p["format"] == "png")
    assert png["ssim"] == 1.0  # lossless


def test_points_equal_independent_process_runs(result: dict[str, Any]) -> None:
    """Reusing one prepared image must not change any result: spot-check against process()."""
    by = {(p["format"], p["quality"], p["option_value"]): p for p in result["points"]}
    for fmt, q, opt, extra in [("jpeg", 60, None, {}), ("avif", 40, None, {}),
                               ("webp", 80, 6, {"webp": {"method": 6}})]:
        r = process(SRC, {"format": fmt, "quality": q, **extra})
        p = by[(fmt, q, opt)]
        assert p["bytes"] == len(r.data)
        assert p["ssim"] == r.facts["metrics"]["ssim"] and p["psnr"] == r.facts["metrics"]["psnr"]


@pytest.mark.parametrize("fmt,opt", [("jpeg", None), ("webp", 2), ("webp", 6), ("avif", None)])
def test_monotone_trends_on_photo_like_image(result: dict[str, Any], fmt: str, opt: Any) -> None:
    pts = sorted((p for p in result["points"] if p["format"] == fmt and p["option_value"] == opt),
                 key=lambda p: p["quality"])
    assert len(pts) == len(GRID["qualities"])
    for lo, hi in zip(pts, pts[1:], strict=False):
        assert hi["bytes"] >= lo["bytes"] * 0.99, (fmt, lo, hi)  # bytes grow with quality (1% slack)
        assert hi["ssim"] >= lo["ssim"] - 0.002, (fmt, lo, hi)  # and so does SSIM (tiny slack)
    assert pts[-1]["bytes"] > pts[0]["bytes"] * 2 and pts[-1]["ssim"] > pts[0]["ssim"]


def test_resize_is_applied_once_for_all_points() -> None:
    r = sweep(SRC, {"formats": ["jpeg", "webp"], "qualities": [50, 90]}, resize={"width": 120})
    assert {(p["width"], p["height"]) for p in r["points"]} == {(120, 80)}
    assert r["output_size"] == [120, 80]


def test_jpeg_subsampling_option_only_changes_jpeg() -> None:
    grid = {"formats": ["jpeg", "webp"], "qualities": [70],
            "option": {"name": "jpeg.subsampling", "values": ["4:4:4", "4:2:0"]}}
    pts = sweep(SRC, grid)["points"]
    jp = {p["option_value"]: p for p in pts if p["format"] == "jpeg"}
    assert set(jp) == {"4:4:4", "4:2:0"} and jp["4:4:4"]["bytes"] > jp["4:2:0"]["bytes"]
    assert [p["option_value"] for p in pts if p["format"] == "webp"] == [None]


def test_parts_cover_every_cell_exactly_once() -> None:
    grid = parse_grid({"formats": ["jpeg", "webp", "avif"], "qualities": list(range(5, 100, 5)),
                       "option": {"name": "webp.method", "values": [0, 3, 6]}})
    parts = plan_parts(grid, max_cells=20)
    flat = [c for part in parts for c in part]
    assert Counter(flat) == Counter(grid.cells()) and len(flat) == len(grid.cells())
    assert all(0 < len(p) <= 20 and len({c.format for c in p}) == 1 for p in parts)
    assert [p[0].format for p in parts] == ["jpeg", "webp", "webp", "webp", "avif"]


def test_cell_round_trip_and_labels() -> None:
    c = Cell("jpeg", 80, "jpeg.subsampling", "4:2:0")
    assert Cell.from_dict(c.to_dict()) == c and c.label() == "jpeg-q80-subsampling420"
    assert c.options() == {"jpeg": {"subsampling": "4:2:0"}}


@pytest.mark.parametrize("grid,field", [
    ({"formats": [], "qualities": [50]}, "grid.formats"),
    ({"formats": ["bmp"], "qualities": [50]}, "grid.formats"),
    ({"formats": ["jpeg", "jpeg"], "qualities": [50]}, "grid.formats"),
    ({"formats": ["jpeg"], "qualities": [0]}, "grid.qualities"),
    ({"formats": ["jpeg"], "qualities": ["80"]}, "grid.qualities"),
    ({"formats": ["jpeg"], "qualities": list(range(1, MAX_QUALITIES + 2))}, "grid.qualities"),
    ({"formats": ["jpeg"], "qualities": [50], "option": {"name": "webp.method", "values": [4]}},
     "grid.option.name"),
    ({"formats": ["webp"], "qualities": [50], "option": {"name": "webp.method", "values": [9]}},
     "grid.option.values"),
    ({"formats": ["webp"], "qualities": [50], "option": {"name": "webp.method", "values": [True]}},
     "grid.option.values"),
    ({"formats": ["webp"], "qualities": [50], "option": {"name": "nope", "values": [1]}}, "grid.option.name"),
    ({"formats": ["webp"], "qualities": [50], "extra": 1}, "grid"),
    ("jpeg", "grid"),
])
def test_bad_grids_are_typed_errors(grid: Any, field: str) -> None:
    with pytest.raises(InvalidRecipe) as ei:
        parse_grid(grid)
    assert ei.value.code == "invalid_recipe" and ei.value.details[0]["field"] == field


def test_largest_legal_grid_is_accepted() -> None:
    big = {"formats": ["jpeg", "webp", "avif", "png"], "qualities": list(range(1, MAX_QUALITIES + 1)),
           "option": {"name": "webp.method", "values": [0, 2, 4, 6]}}
    cells = parse_grid(big).cells()
    assert len(cells) == 20 + 80 + 20 + 1 <= MAX_CELLS
    parts = plan_parts(parse_grid(big))  # default chunk sizes: jpeg 20, webp 10, avif 3, png 1
    assert [len(p) for p in parts] == [20] + [10] * 8 + [3] * 6 + [2] + [1]
    assert Counter(c for p in parts for c in p) == Counter(cells)
    assert len(big["formats"]) <= MAX_FORMATS


def test_sweep_is_limited_by_the_side_limits_of_its_own_formats_only() -> None:
    # 17000 px is beyond WebP's 16383-px limit but fine for JPEG: a JPEG sweep must run
    wide = g.photo_bytes(17000, 8, "png")
    r = sweep(wide, {"formats": ["jpeg"], "qualities": [80]})
    assert [(p["format"], p["width"], p["height"]) for p in r["points"]] == [("jpeg", 17000, 8)]
    with pytest.raises(InvalidRecipe, match="webp supports at most 16383 px"):
        sweep(wide, {"formats": ["webp"], "qualities": [80]})


# --- the encoder axis -------------------------------------------------------------------------------


def test_encoder_axis_points_match_independent_jobs() -> None:
    src = g.photo_bytes(160, 100, "png", seed=11)
    grid = {"formats": ["jpeg", "jpeg:mozjpeg", "jpeg:jpegli", "jxl"], "qualities": [50, 80]}
    res = sweep(src, grid)
    pts = {p["label"]: p for p in res["points"]}
    assert set(pts) == {"jpeg-q50", "jpeg-q80", "jpeg-mozjpeg-q50", "jpeg-mozjpeg-q80",
                        "jpeg-jpegli-q50", "jpeg-jpegli-q80", "jxl-q50", "jxl-q80"}
    assert {p["encoder"] for p in res["points"]} == {"jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "jxl"}
    for label, enc, fmt in (("jpeg-mozjpeg-q80", "mozjpeg", "jpeg"), ("jpeg-jpegli-q50", "jpegli", "jpeg"),
                            ("jxl-q80", None, "jxl"), ("jpeg-q50", "turbo", "jpeg")):
        p = pts[label]
        recipe = {"format": fmt, "quality": p["quality"], **({"jpeg": {"encoder": enc}} if enc else {})}
        assert p["bytes"] == len(process(src, recipe).data)
    assert pts["jpeg-mozjpeg-q80"]["bytes"] < pts["jpeg-q80"]["bytes"]


def test_encoder_axis_grid_rules() -> None:
    with pytest.raises(InvalidRecipe) as ei:
        parse_grid({"formats": ["jpeg", "jpeg:turbo"], "qualities": [50]})
    assert ei.value.details[0]["field"] == "grid.formats"
    with pytest.raises(InvalidRecipe) as ei:
        parse_grid({"formats": ["jpeg:jpegli"], "qualities": [50],
                    "option": {"name": "jpeg.subsampling", "values": ["4:4:4"]}})
    assert ei.value.details[0]["field"] == "grid.option.name"
    with pytest.raises(InvalidRecipe) as ei:
        parse_grid({"formats": ["jpeg:mozjpeg"], "qualities": [50],
                    "option": {"name": "jpeg.subsampling", "values": ["4:2:2"]}})
    assert ei.value.details[0]["field"] == "grid.option.values"
    g2 = parse_grid({"formats": ["jpeg:mozjpeg", "jpeg:jpegli", "jxl"], "qualities": [50, 70],
                     "option": {"name": "jpeg.subsampling", "values": ["4:4:4", "4:2:0"]}})
    cells = g2.cells()
    assert [c.label() for c in cells if c.encoder == "jpegli"] == ["jpeg-jpegli-q50", "jpeg-jpegli-q70"]
    assert len([c for c in cells if c.encoder == "mozjpeg"]) == 4
    parts = plan_parts(g2)
    assert sorted(c.label() for part in parts for c in part) == sorted(c.label() for c in cells)
    assert all(len({c.encoder_name for c in part}) == 1 for part in parts)
    for c in cells:
        assert Cell.from_dict(c.to_dict()) == c
    g3 = parse_grid({"formats": ["jxl"], "qualities": [60],
                     "option": {"name": "jxl.effort", "values": [1, 7]}})
    assert [c.options() for c in g3.cells()] == [{"jxl": {"effort": 1}}, {"jxl": {"effort": 7}}]
