"""Recipe model: defaults, every field's validation, error details and the stable hash."""

from __future__ import annotations

import json

import pytest

from imagepipe.core import Recipe, parse_recipe
from imagepipe.core.limits import Limits
from imagepipe.errors import InternalError, InvalidRecipe

ARCH_EXAMPLE = {
    "version": 1,
    "resize": {"width": 1600, "height": 1600, "fit": "inside", "upscale": False, "filter": "lanczos"},
    "format": "webp",
    "quality": 80,
    "jpeg": {"progressive": True, "optimize": True, "subsampling": "4:2:0", "encoder": "turbo",
             "quant_table": None},
    "webp": {"method": 4, "lossless": False},
    "avif": {"speed": 6, "subsampling": "4:2:0"},
    "jxl": {"effort": 7, "lossless": False},
    "png": {"compress_level": 6, "palette": False, "colors": 256},
    "metadata": "strip",
    "color": "srgb",
    "background": "#ffffff",
    "ops": {"grayscale": False, "sharpen": 0.0, "blur": 0.0},
    "watermark": {"text": "© ImagePipe", "image_b64": None, "position": "bottom-right",
                  "opacity": 0.5, "scale": 0.25, "margin": 0.02},
    "animation": {"keep": False, "max_frames": 100},
    "target": None,
    "max_bytes": None,
    "candidates": None,
}


def bad_fields(raw: object) -> list[str]:
    with pytest.raises(InvalidRecipe) as ei:
        parse_recipe(raw)  # type: ignore[arg-type]
    err = ei.value
    assert err.code == "invalid_recipe"
    assert isinstance(err.details, list) and err.details
    for d in err.details:
        assert set(d) == {"field", "message"} and d["message"]
    return [d["field"] for d in err.details]


def test_empty_recipe_is_valid_with_documented_defaults() -> None:
    r = parse_recipe({})
    assert r == Recipe() == parse_recipe(None)
    assert r.version == 1 and r.resize is None and r.format == "original" and r.quality == 80
    assert r.metadata == "strip" and r.color == "srgb" and r.background == "#ffffff"
    assert r.watermark is None and r.target is None and r.max_bytes is None
    assert r.animation.keep is False and r.animation.max_frames == 100
    assert (r.jpeg.progressive, r.jpeg.optimize, r.jpeg.subsampling) == (True, True, "4:2:0")
    assert (r.webp.method, r.webp.lossless, r.avif.speed) == (4, False, 6)
    assert (r.png.compress_level, r.png.palette, r.png.colors) == (6, False, 256)
    assert (r.ops.grayscale, r.ops.sharpen, r.ops.blur) == (False, 0.0, 0.0)


def test_architecture_example_round_trips() -> None:
    r = parse_recipe(ARCH_EXAMPLE)
    assert r.model_dump(mode="json") == ARCH_EXAMPLE
    assert parse_recipe(json.dumps(ARCH_EXAMPLE)) == r
    assert parse_recipe(json.dumps(ARCH_EXAMPLE).encode()) == r
    assert parse_recipe(r) is r


def test_hash_is_stable_16_hex_and_canonical() -> None:
    a = parse_recipe({"format": "jpeg", "quality": 70})
    b = parse_recipe({"quality": 70, "format": "jpeg", "version": 1})  # key order, explicit default
    assert a.recipe_hash() == b.recipe_hash()
    assert len(a.recipe_hash()) == 16 and int(a.recipe_hash(), 16) >= 0
    assert a.recipe_hash() != parse_recipe({"format": "jpeg", "quality": 71}).recipe_hash()
    assert " " not in a.canonical_json()
    # the documented formula, computed independently
    import hashlib

    doc = a.model_dump(mode="json")
    # fields added after the first release stay out of the hash at their default
    del doc["jpeg"]["encoder"], doc["jpeg"]["quant_table"], doc["avif"]["subsampling"], doc["jxl"]
    del doc["candidates"]
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert a.recipe_hash() == hashlib.sha256(canon.encode()).hexdigest()[:16]
    # pinned: the hash names stored outputs, so it must not change across releases by accident
    assert Recipe().recipe_hash() == "a41af2c27dc11db7"


def test_later_fields_change_the_hash_only_when_set() -> None:
    base = parse_recipe({"format": "best", "quality": 80})
    same = parse_recipe({"format": "best", "quality": 80, "jpeg": {"encoder": "turbo", "quant_table": None},
                         "jxl": {"effort": 7}, "avif": {"subsampling": "4:2:0"}, "candidates": None})
    assert base.recipe_hash() == same.recipe_hash()
    assert "quant_table" not in base.canonical_json()
    hashes = {base.recipe_hash()}
    for extra in ({"jpeg": {"encoder": "mozjpeg"}}, {"jpeg": {"encoder": "jpegli"}}, {"jxl": {"effort": 3}},
                  {"jxl": {"lossless": True}}, {"avif": {"subsampling": "4:4:4"}},
                  {"candidates": ["jpeg", "jxl"]}, {"jpeg": {"subsampling": "auto"}},
                  {"jpeg": {"encoder": "mozjpeg", "quant_table": 2}},
                  {"jpeg": {"encoder": "mozjpeg", "quant_table": 3}}, {"avif": {"subsampling": "auto"}}):
        hashes.add(parse_recipe({"format": "best", "quality": 80, **extra}).recipe_hash())
    assert len(hashes) == 11  # an explicit quant_table 3 (the default table) is still a different recipe


def test_encoder_jxl_and_candidates_validation() -> None:
    assert bad_fields({"jpeg": {"encoder": "libjpeg"}}) == ["jpeg.encoder"]
    assert bad_fields({"jxl": {"effort": 10}}) == ["jxl.effort"]
    assert bad_fields({"avif": {"subsampling": "4:2:2"}}) == ["avif.subsampling"]
    assert bad_fields({"avif": {"subsampling": "4:2:1"}}) == ["avif.subsampling"]
    assert parse_recipe({"avif": {"subsampling": "auto"}}).avif.chroma(90) == "4:4:4"
    assert bad_fields({"jpeg": {"encoder": "mozjpeg", "quant_table": 9}}) == ["jpeg.quant_table"]
    assert bad_fields({"jpeg": {"encoder": "mozjpeg", "quant_table": "2"}}) == ["jpeg.quant_table"]
    r = parse_recipe({"jpeg": {"encoder": "mozjpeg", "subsampling": "auto", "quant_table": 0}})
    assert (r.jpeg.subsampling, r.jpeg.quant_table) == ("auto", 0)
    assert (r.jpeg.chroma(89), r.jpeg.chroma(90)) == ("4:2:0", "4:4:4")
    assert parse_recipe({}).jpeg.chroma(95) == "4:2:0"
    assert bad_fields({"format": "jpeg", "candidates": ["jpeg"]}) == ["candidates"]
    assert bad_fields({"format": "best", "candidates": ["jpeg", "jpeg"]}) == ["candidates"]
    assert bad_fields({"format": "best", "candidates": []}) == ["candidates"]
    assert "candidates" in bad_fields({"format": "best", "candidates": ["bmp"]})[0]
    r = parse_recipe({"format": "jxl", "jxl": {"effort": 3, "lossless": True}})
    assert (r.format, r.jxl.effort, r.jxl.lossless) == ("jxl", 3, True)


def test_background_case_is_normalised_for_the_hash() -> None:
    upper, lower = parse_recipe({"background": "#ABCDEF"}), parse_recipe({"background": "#abcdef"})
    assert upper.recipe_hash() == lower.recipe_hash()
    assert parse_recipe({"background": "#abc"}).background_rgb() == (0xAA, 0xBB, 0xCC)


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        ({"version": 2}, ["version"]),
        ({"resize": {"width": 0}}, ["resize.width"]),
        ({"resize": {"width": 20001}}, ["resize.width"]),
        ({"resize": {"height": -5}}, ["resize.height"]),
        ({"resize": {"width": 10, "fit": "stretch"}}, ["resize.fit"]),
        ({"resize": {"width": 10, "fit": "cover"}}, ["resize.fit"]),
        ({"resize": {"height": 10, "fit": "fill"}}, ["resize.fit"]),
        ({"resize": {}}, ["resize"]),
        ({"resize": {"width": 10, "filter": "sinc"}}, ["resize.filter"]),
        ({"resize": {"width": 10, "upscale": "maybe"}}, ["resize.upscale"]),
        ({"format": "bmp"}, ["format"]),
        ({"quality": 0}, ["quality"]),
        ({"quality": 101}, ["quality"]),
        ({"quality": "high"}, ["quality"]),
        ({"quality": True}, ["quality"]),
        ({"quality": 50.5}, ["quality"]),
        ({"quality": "auto"}, ["quality"]),
        ({"jpeg": {"subsampling": "4:1:1"}}, ["jpeg.subsampling"]),
        ({"jpeg": {"progressive": "yes please"}}, ["jpeg.progressive"]),
        ({"webp": {"method": 7}}, ["webp.method"]),
        ({"webp": {"lossless": []}}, ["webp.lossless"]),
        ({"avif": {"speed": 11}}, ["avif.speed"]),
        ({"png": {"compress_level": 10}}, ["png.compress_level"]),
        ({"png": {"colors": 1}}, ["png.colors"]),
        ({"png": {"colors": 257}}, ["png.colors"]),
        ({"metadata": "all"}, ["metadata"]),
        ({"color": "p3"}, ["color"]),
        ({"background": "white"}, ["background"]),
        ({"background": "#12345"}, ["background"]),
        ({"ops": {"sharpen": -1}}, ["ops.sharpen"]),
        ({"ops": {"blur": 101}}, ["ops.blur"]),
        ({"ops": {"grayscale": "no"}}, ["ops.grayscale"]),
        ({"watermark": {}}, ["watermark"]),
        ({"watermark": {"text": "a", "image_b64": "abcd"}}, ["watermark"]),
        ({"watermark": {"text": ""}}, ["watermark.text"]),
        ({"watermark": {"text": "a", "position": "middle"}}, ["watermark.position"]),
        ({"watermark": {"text": "a", "opacity": 1.5}}, ["watermark.opacity"]),
        ({"watermark": {"text": "a", "scale": 0}}, ["watermark.scale"]),
        ({"watermark": {"text": "a", "margin": 0.6}}, ["watermark.margin"]),
        ({"animation": {"max_frames": 0}}, ["animation.max_frames"]),
        ({"animation": {"keep": "sometimes"}}, ["animation.keep"]),
        ({"quality": "auto", "target": {"metric": "psnr", "min": 30}}, ["target.metric"]),
        ({"quality": "auto", "target": {"metric": "ssim", "min": 1.5}}, ["target.min"]),
        ({"quality": "auto", "target": {"metric": "ssim"}}, ["target.min"]),
        ({"target": {"metric": "ssim", "min": 0.9}}, ["target"]),
        ({"quality": "auto", "max_bytes": 10}, ["max_bytes"]),
        ({"colour": "srgb"}, ["colour"]),
        ({"resize": {"width": 10, "heigth": 5}}, ["resize.heigth"]),
        ({"resize": {"width": "640"}}, ["resize.width"]),  # strict: no string → int coercion
    ],
)
def test_each_bad_field_is_named(raw: dict, fields: list[str]) -> None:
    assert bad_fields(raw) == fields


def test_several_bad_fields_are_all_reported() -> None:
    fields = bad_fields({"resize": {"width": 0, "fit": "zz"}, "quality": 500, "format": "tga",
                         "png": {"colors": 0}})
    assert set(fields) == {"resize.width", "resize.fit", "quality", "format", "png.colors"}


@pytest.mark.parametrize("raw", ["{not json", b"\xff\xfe", "[1, 2]", 42])
def test_non_object_recipes_are_rejected(raw: object) -> None:
    assert bad_fields(raw) == ["recipe"]


@pytest.mark.parametrize(
    "raw",
    [
        {"resize": {"width": 100}},
        {"resize": {"height": 100, "fit": "contain"}},
        {"resize": {"width": 10, "height": 10, "fit": "cover", "upscale": True, "filter": "nearest"}},
        {"resize": None, "watermark": None, "target": None, "max_bytes": None},
        {"format": "avif", "quality": 1},
        {"format": "gif", "quality": 100},
        {"quality": "auto", "max_bytes": 5000},
        {"quality": "auto", "target": {"metric": "ssimulacra2", "min": 70}},
        {"format": "best", "quality": "auto", "target": {"min": 0.95}, "max_bytes": 10_000},
        {"watermark": {"image_b64": "iVBORw0KGgo=", "position": "tiled"}},
        {"metadata": "keep_copyright_icc", "color": "keep", "background": "#000"},
    ],
)
def test_valid_recipes(raw: dict) -> None:
    r = parse_recipe(raw)
    assert isinstance(r, Recipe)
    assert parse_recipe(r.model_dump(mode="json")) == r  # dump → parse is lossless


def test_recipe_is_immutable() -> None:
    r = Recipe()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        r.quality = 10  # type: ignore[misc]


def test_limits_defaults_and_env() -> None:
    d = Limits()
    assert (d.max_pixels, d.max_bytes, d.max_frames, d.max_output_bytes) == (
        50_000_000, 25 * 1024 * 1024, 300, 50 * 1024 * 1024)
    assert Limits.from_env({}) == d
    env = {"IMAGEPIPE_MAX_PIXELS": "1000", "IMAGEPIPE_MAX_UPLOAD_BYTES": "2000", "IMAGEPIPE_MAX_FRAMES": "3",
           "IMAGEPIPE_MAX_OUTPUT_BYTES": "4000"}
    assert Limits.from_env(env) == Limits(1000, 2000, 3, 4000)
    for bad in ("abc", "0", "-1"):
        with pytest.raises(InternalError, match="IMAGEPIPE_MAX_FRAMES"):
            Limits.from_env({"IMAGEPIPE_MAX_FRAMES": bad})
