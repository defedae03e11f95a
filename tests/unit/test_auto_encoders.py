"""``format: best`` over candidates (JPEG encoders, JPEG XL) and the 4:4:4 chroma retry."""

from __future__ import annotations

import io

import imagegen as g
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from imagepipe.core import process
from imagepipe.core.prepare import encode_variant, measure, prepare, reference
from imagepipe.errors import InvalidRecipe, TargetUnreachable


@pytest.fixture(scope="module")
def photo() -> bytes:
    return g.photo_bytes(320, 200, "png", seed=5)


def _chroma_detail(w: int = 96, h: int = 64) -> bytes:
    """Saturated one-pixel red/blue stripes on green: what 4:2:0 chroma cannot keep."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 1] = 120
    a[:, ::2, 0] = 230
    a[:, 1::2, 2] = 230
    a[::3] = (200, 40, 160)
    return g.encode(Image.fromarray(a), "png")


def test_best_over_jpeg_encoders_and_jxl_is_the_smallest_single_answer(photo: bytes) -> None:
    names = ["jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "jxl"]
    goal = {"quality": "auto", "target": {"metric": "ssim", "min": 0.95}}
    best = process(photo, {"format": "best", "candidates": names, **goal})
    s = best.facts["search"]
    assert s["candidates"] == names and set(s["per_format"]) == set(names)
    singles = {}
    for n in names:
        fmt, _, enc = n.partition(":")
        r = process(photo, {"format": fmt, **goal, **({"jpeg": {"encoder": enc}} if enc else {})})
        singles[n] = len(r.data)
        assert s["per_format"][n]["bytes"] == len(r.data)
    assert len(best.data) == min(singles.values())
    winner = min(singles, key=lambda n: singles[n])
    assert s["chosen"]["encoder"] == winner == best.facts["output"]["encoder"]
    assert {t.get("encoder", t["format"]) for t in s["trace"]} == set(names)


def test_default_candidates_leave_jxl_out_and_jpeg_follows_the_recipe_encoder(photo: bytes) -> None:
    r = process(photo, {"format": "best", "quality": 70, "jpeg": {"encoder": "mozjpeg"}})
    s = r.facts["search"]
    assert s["candidates"] == ["jpeg", "webp", "avif"]
    jpeg_probe = next(t for t in s["trace"] if t["format"] == "jpeg")
    assert jpeg_probe["encoder"] == "jpeg:mozjpeg"
    assert "jxl" not in {t["format"] for t in s["trace"]}


def test_candidates_for_a_kept_animation() -> None:
    anim = g.animated_gif(4, 48, 32)
    r = process(anim, {"format": "best", "quality": 60, "animation": {"keep": True},
                       "candidates": ["jpeg", "webp", "jxl"]})
    assert r.facts["search"]["candidates"] == ["webp"] and r.facts["output"]["frames"] == 4
    with pytest.raises(InvalidRecipe) as ei:
        process(anim, {"format": "best", "animation": {"keep": True}, "candidates": ["jpeg", "jxl"]})
    assert ei.value.details[0]["field"] == "candidates"


def _scores(src: bytes, chroma: str, enc: str = "turbo") -> float:
    p = prepare(src, {"format": "jpeg"})
    data, _ = encode_variant(p, "jpeg", 100, {"jpeg": {"subsampling": chroma, "encoder": enc}})
    return float(measure(p, data, reference(p), ("ssim", "psnr", "ssimulacra2"))["ssimulacra2"])


@pytest.mark.parametrize("encoder", ["turbo", "mozjpeg"])
def test_444_is_tried_when_420_cannot_reach_the_target(encoder: str) -> None:
    src = _chroma_detail()
    top_420, top_444 = _scores(src, "4:2:0", encoder), _scores(src, "4:4:4", encoder)
    assert top_444 > top_420 + 2  # the image really needs full chroma
    target = round((top_420 + top_444) / 2, 2)
    r = process(src, {"format": "jpeg", "quality": "auto", "jpeg": {"encoder": encoder},
                      "target": {"metric": "ssimulacra2", "min": target}})
    s = r.facts["search"]
    assert s["chosen"]["subsampling"] == "4:4:4" and s["chroma_444_tried"] == ["jpeg"]
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(r.data))) == 0  # 4:4:4 written
    assert r.facts["metrics"]["ssimulacra2"] >= target
    first = [t for t in s["trace"] if "subsampling" not in t]
    second = [t for t in s["trace"] if t.get("subsampling") == "4:4:4"]
    assert first and second and s["trace"] == first + second  # every 4:2:0 probe came first
    assert all(t["ssimulacra2"] < target for t in first)


def test_unreachable_even_at_444_lists_both_passes() -> None:
    with pytest.raises(TargetUnreachable) as ei:
        process(_chroma_detail(), {"format": "best", "quality": "auto",
                                   "candidates": ["jpeg:jpegli", "jpeg", "webp"],
                                   "target": {"metric": "ssimulacra2", "min": 99.9}})
    tried = ei.value.details["tried"]
    assert "4:4:4" in str(ei.value)
    assert {t.get("encoder", t["format"]) for t in tried if t.get("subsampling")} == {"jpeg:turbo"}


def test_no_444_pass_when_420_reaches_the_target(photo: bytes) -> None:
    r = process(photo, {"format": "jpeg", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 60}})
    s = r.facts["search"]
    assert "chroma_444_tried" not in s and all("subsampling" not in t for t in s["trace"])
