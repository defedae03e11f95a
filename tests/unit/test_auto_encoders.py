"""``format: best`` over candidates (JPEG encoders, JPEG XL) and the 4:4:4 chroma retry."""

from __future__ import annotations

import io
from typing import Any

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


# --- jpeg.subsampling: auto, and JPEG XL's fractional quality ----------------------------------


AUTO_MOZ = {"encoder": "mozjpeg", "subsampling": "auto"}


def _single(src: bytes, encoder: str, chroma: str, target: float) -> bytes:
    return process(src, {"format": "jpeg", "quality": "auto",
                         "jpeg": {"encoder": encoder, "subsampling": chroma},
                         "target": {"metric": "ssimulacra2", "min": target}}).data


@pytest.mark.parametrize(("encoder", "target"), [("mozjpeg", 60), ("mozjpeg", 70), ("turbo", 70)])
def test_auto_chroma_keeps_the_smaller_of_the_420_and_444_answers(photo: bytes, encoder: str,
                                                                   target: float) -> None:
    only_420 = process(photo, {"format": "jpeg", "quality": "auto", "jpeg": {"encoder": encoder},
                               "target": {"metric": "ssimulacra2", "min": target}})
    assert "chroma_444_tried" not in only_420.facts["search"]  # 4:2:0 alone reaches it
    only_444 = _single(photo, encoder, "4:4:4", target)
    r = process(photo, {"format": "jpeg", "quality": "auto",
                        "jpeg": {"encoder": encoder, "subsampling": "auto"},
                        "target": {"metric": "ssimulacra2", "min": target}})
    s = r.facts["search"]
    assert len(r.data) == min(len(only_420.data), len(only_444))
    chosen = "4:4:4" if len(only_444) < len(only_420.data) else "4:2:0"
    assert s["chosen"]["subsampling"] == chosen == s["per_format"]["jpeg"]["subsampling"]
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(r.data))) == (0 if chosen == "4:4:4" else 2)
    assert r.facts["metrics"]["ssimulacra2"] >= target
    passes = [t["subsampling"] for t in s["trace"]]
    assert passes == sorted(passes, key=lambda c: c == "4:4:4") and set(passes) == {"4:2:0", "4:4:4"}
    assert "chroma_444_tried" not in s  # no third pass


def test_auto_chroma_chooses_444_on_the_photo_at_70_and_prunes_a_hopeless_444_pass(photo: bytes) -> None:
    # measured on this image: mozjpeg 4:4:4 q52 (4.8 kB) beats 4:2:0 q80 (5.7 kB) at SSIMULACRA2 70;
    # at 60 4:2:0 wins and the 4:4:4 pass stops once a probe below the target is already larger
    at70 = process(photo, {"format": "jpeg", "quality": "auto", "jpeg": AUTO_MOZ,
                           "target": {"metric": "ssimulacra2", "min": 70}})
    assert at70.facts["search"]["chosen"]["subsampling"] == "4:4:4"
    at60 = process(photo, {"format": "jpeg", "quality": "auto", "jpeg": AUTO_MOZ,
                           "target": {"metric": "ssimulacra2", "min": 60}})
    s = at60.facts["search"]
    assert s["chosen"]["subsampling"] == "4:2:0"
    probes_444 = [t for t in s["trace"] if t["subsampling"] == "4:4:4"]
    assert len(probes_444) < 7  # a full bisection over 1–100 makes 7
    answer_420 = len(at60.data)
    assert probes_444[-1]["bytes"] >= answer_420 and probes_444[-1]["ssimulacra2"] < 60
    assert all(t["quality"] < s["chosen"]["quality"] for t in probes_444)  # 4:4:4 only below q(4:2:0)


def test_auto_chroma_at_a_fixed_quality_follows_the_libvips_rule(photo: bytes) -> None:
    for encoder in ("turbo", "mozjpeg"):
        for q, sampling in ((89, 2), (90, 0)):
            r = process(photo, {"format": "jpeg", "quality": q,
                                "jpeg": {"encoder": encoder, "subsampling": "auto"}})
            assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(r.data))) == sampling, (encoder, q)


def test_auto_chroma_with_jpegli_is_a_typed_error(photo: bytes) -> None:
    with pytest.raises(InvalidRecipe) as ei:
        process(photo, {"format": "jpeg", "quality": 80,
                        "jpeg": {"encoder": "jpegli", "subsampling": "auto"}})
    assert ei.value.details[0]["field"] == "jpeg.subsampling"


def test_jxl_auto_quality_is_refined_to_a_tenth(photo: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagepipe.core import auto

    goal = {"format": "jxl", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 75}}
    r = process(photo, goal)
    s = r.facts["search"]
    q = s["chosen"]["quality"]
    assert r.facts["output"]["quality"] == q and r.facts["metrics"]["ssimulacra2"] >= 75
    scores = {t["quality"]: t["ssimulacra2"] for t in s["trace"]}
    whole = [k for k in scores if float(k).is_integer()]
    q_int = min(k for k in whole if scores[k] >= 75)
    assert q_int - 1 in scores and scores[q_int - 1] < 75  # the integer bracket
    assert q_int - 1 < q <= q_int and round(q * 10) == q * 10
    tenths = {k: v for k, v in scores.items() if not float(k).is_integer()}
    assert 1 <= len(tenths) <= 4 and all(q_int - 1 < k < q_int for k in tenths)
    reaching = [t for t in s["trace"] if t["ssimulacra2"] >= 75 and q_int - 1 < t["quality"] <= q_int]
    assert len(r.data) == min(t["bytes"] for t in reaching)  # the smallest output that reaches it
    lowest = min(t["quality"] for t in reaching)
    if lowest > q_int - 0.9:  # bisection: the tenth below the lowest reaching one was probed, short
        assert scores[round(lowest - 0.1, 1)] < 75
    monkeypatch.setattr(auto, "FRACTIONAL", ())
    integer = process(photo, goal)
    assert integer.facts["search"]["chosen"]["quality"] == q_int
    assert len(r.data) <= len(integer.data)


def test_a_fractional_quality_is_for_jxl_only(photo: bytes) -> None:
    p = prepare(photo, {"format": "jxl"})
    data, facts = encode_variant(p, "jxl", 80.5)
    assert facts["quality"] == 80.5 and data[:2] == b"\xff\x0a"
    with pytest.raises(InvalidRecipe) as ei:
        encode_variant(p, "jpeg", 80.5)
    assert ei.value.details[0]["field"] == "quality"


def test_avif_auto_chroma_keeps_the_smaller_answer(photo: bytes) -> None:
    def run(chroma: str) -> Any:
        return process(photo, {"format": "avif", "quality": "auto", "avif": {"subsampling": chroma},
                               "target": {"metric": "ssimulacra2", "min": 69}})

    auto, only_420, only_444 = run("auto"), run("4:2:0"), run("4:4:4")
    assert "chroma_444_tried" not in only_420.facts["search"]  # 4:2:0 reaches it alone
    s = auto.facts["search"]
    sizes = {"4:2:0": len(only_420.data), "4:4:4": len(only_444.data)}
    assert len(auto.data) == min(sizes.values())
    winner = min(sizes, key=lambda c: sizes[c])
    assert s["chosen"]["subsampling"] == winner
    assert auto.data == (only_420 if winner == "4:2:0" else only_444).data
    assert {t["subsampling"] for t in s["trace"]} == {"4:2:0", "4:4:4"} and "chroma_444_tried" not in s


def test_a_refinement_the_budget_cannot_fit_keeps_the_whole_quality_and_says_so(
        photo: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagepipe.core import auto
    from imagepipe.errors import OverTimeBudget

    real = auto._Search.attempt

    def no_time_for_tenths(self: Any, name: str, q: Any, chroma: Any = None) -> Any:
        if not float(q).is_integer():
            raise OverTimeBudget("jxl encoding needs more time than is left")
        return real(self, name, q, chroma)

    monkeypatch.setattr(auto._Search, "attempt", no_time_for_tenths)
    r = process(photo, {"format": "jxl", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 75}})
    s = r.facts["search"]
    assert float(s["chosen"]["quality"]).is_integer() and r.facts["metrics"]["ssimulacra2"] >= 75
    assert "more time" in s["per_format"]["jxl"]["refine_stopped"]


def test_jxl_auto_under_a_real_budget_uses_the_cost_table(photo: bytes) -> None:
    import time

    from imagepipe.core.budget import Budget

    budget = Budget(deadline=time.monotonic() + 60.0, total_ms=60_000, reserve_ms=0.0)
    r = process(photo, {"format": "jxl", "quality": "auto", "target": {"metric": "ssimulacra2", "min": 75}},
                budget=budget)
    s = r.facts["search"]
    assert r.facts["budget"]["skipped"] == [] and r.facts["metrics"]["ssimulacra2"] >= 75
    assert "refine_stopped" not in s["per_format"]["jxl"]
    assert any(not float(t["quality"]).is_integer() for t in s["trace"])
