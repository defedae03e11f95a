"""Untrusted bytes: every bad input gets its typed error, generated in code."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image, ImageFile

from imagepipe.core import Limits, process
from imagepipe.core.decode import decode_bytes, open_image, sniff_format
from imagepipe.errors import (
    CorruptImage,
    ImageError,
    InvalidRecipe,
    OutputTooLarge,
    TooManyFrames,
    TooManyPixels,
    UnsupportedFormat,
)
from tests.unit import imagegen as g


def code_of(data: bytes, recipe: dict | None = None, limits: Limits | None = None) -> str:
    with pytest.raises(ImageError) as ei:
        process(data, recipe or {}, limits)
    err = ei.value
    assert err.message and err.code in err.to_dict()["code"]
    return err.code


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("text", g.text_bytes()),
        ("pdf", g.pdf_bytes()),
        ("eps", g.eps_bytes()),
        ("svg", g.svg_bytes()),
        ("html", b"<!doctype html><html><body>hi</body></html>"),
        ("bmp", g.encode(g.photo_like(16, 16), "bmp")),  # a real image, but not on the allowlist
        ("random", bytes(range(256)) * 8),
    ],
)
def test_disallowed_or_non_images_are_unsupported(name: str, data: bytes) -> None:
    assert code_of(data) == "unsupported_format"


def test_eps_never_reaches_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("EPS plugin must not be used")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", boom)
    with pytest.raises(UnsupportedFormat):
        process(g.eps_bytes(), {})


def test_zero_bytes_is_corrupt() -> None:
    with pytest.raises(CorruptImage, match="empty"):
        process(b"", {})


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "gif"])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9])
def test_truncated_files_are_corrupt(fmt: str, keep: float) -> None:
    data = g.animated_gif(4, 64, 64) if fmt == "gif" else g.photo_bytes(160, 120, fmt)
    assert code_of(g.truncated(data, keep)) == "corrupt_image"


def test_truncated_jpeg_is_corrupt_even_with_draft() -> None:
    data = g.truncated(g.photo_bytes(800, 600, "jpeg"), 0.6)
    assert code_of(data, {"resize": {"width": 100}}) == "corrupt_image"


def test_corrupted_png_data_crc_is_corrupt() -> None:
    data = bytearray(g.photo_bytes(64, 64, "png"))
    mid = len(data) // 2
    data[mid:mid + 16] = b"\x00" * 16
    assert code_of(bytes(data)) == "corrupt_image"


def test_png_bit_flip_in_stored_pixels_is_caught_by_the_crc() -> None:
    # compress_level=0: deflate "stored" blocks, so a flipped pixel byte still inflates; the
    # chunk CRC check rejects the file before any pixel is decoded
    data = bytearray(g.photo_bytes(64, 64, "png", compress_level=0))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(CorruptImage, match="CRC"):
        process(bytes(data), {})


def test_load_truncated_images_is_never_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CorruptImage):
        process(g.truncated(g.photo_bytes(160, 120, "jpeg"), 0.7), {})
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # we never change the global either way


def test_load_truncated_images_is_not_honoured_for_a_watermark_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from imagepipe.core.recipe import Watermark
    from imagepipe.core.watermark import render_mark

    # the mark travels in the recipe (untrusted too); it decodes through the same guarded load
    mark = g.truncated(g.encode(g.photo_like(123, 91, mode="RGBA", seed=7), "png"), 0.6)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InvalidRecipe, match="LOAD_TRUNCATED_IMAGES") as ei:
        render_mark(Watermark(image_b64=base64.b64encode(mark).decode()), 400, 300)
    assert ei.value.details[0]["field"] == "watermark.image_b64"


def test_png_header_claiming_20000x10000_is_too_many_pixels_before_decoding() -> None:
    data = g.png_header_only(20000, 10000)
    assert len(data) < 200
    with pytest.raises(TooManyPixels) as ei:
        process(data, {})
    assert "pixel" in ei.value.message


def test_pixel_cap_is_checked_from_the_header() -> None:
    data = g.png_header_only(8000, 7000)  # 56 MP: over our 50 MP cap, under Pillow's bomb threshold
    assert code_of(data) == "too_many_pixels"
    data = g.photo_bytes(100, 100, "png")
    assert code_of(data, limits=Limits(max_pixels=9_999)) == "too_many_pixels"
    assert process(data, {}, Limits(max_pixels=10_000)).facts["output"]["width"] == 100


def test_pillow_bomb_warning_is_an_error() -> None:
    # 120 MP: above Pillow's warning threshold (~89 MP), below its hard error (~179 MP)
    assert Image.MAX_IMAGE_PIXELS and Image.MAX_IMAGE_PIXELS < 120_000_000 < 2 * Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the engine would fail the test
        assert code_of(g.png_header_only(12000, 10000)) == "too_many_pixels"


def test_pixel_cap_above_pillows_threshold_uses_our_cap() -> None:
    # a configured cap above Pillow's MAX_IMAGE_PIXELS: our check decides; the header lies, so
    # the decode fails as corrupt rather than as a bomb
    data = g.png_header_only(10000, 10000)
    assert code_of(data, limits=Limits(max_pixels=200_000_000)) == "corrupt_image"


def test_bomb_warning_filter_does_not_leak() -> None:
    before = list(warnings.filters)
    with pytest.raises(TooManyPixels):
        process(g.png_header_only(20000, 10000), {})
    assert list(warnings.filters) == before


def test_output_pixel_cap_when_upscaling() -> None:
    data = g.photo_bytes(50, 50, "png")
    with pytest.raises(TooManyPixels, match="output would be 200x200"):
        process(data, {"resize": {"width": 200, "upscale": True}}, Limits(max_pixels=10_000))
    assert process(data, {"resize": {"width": 100, "upscale": True}}, Limits(max_pixels=10_000)).data


def test_output_pixel_cap_holds_when_a_late_png_exif_rotates_the_plan() -> None:
    # the orientation (6: rotated 90°) is only known after decoding: the re-planned output
    # (2000 wide from a 10x2000 oriented source = 2000x400000) must still meet the cap
    data = g.png_with_late_exif(Image.new("L", (2000, 10), 128), 6)
    limits = Limits(max_pixels=1_000_000)
    with pytest.raises(TooManyPixels, match="output would be 2000x400000"):
        process(data, {"resize": {"width": 2000, "upscale": True}, "format": "png"}, limits)
    ok = process(data, {"resize": {"width": 40, "upscale": True}, "format": "png"}, limits)
    assert (ok.facts["output"]["width"], ok.facts["output"]["height"]) == (40, 8000)


@pytest.mark.parametrize(("fmt", "height"), [("webp", 164), ("avif", 328), ("jpeg", 656), ("gif", 656)])
def test_output_side_beyond_the_format_limit_is_an_invalid_recipe(fmt: str, height: int) -> None:
    # a one-sided box with upscale: a 100x1 strip scaled to `height` rows is 100 × height wide
    data = g.photo_bytes(100, 1, "png")
    with pytest.raises(InvalidRecipe) as ei:
        process(data, {"resize": {"height": height, "upscale": True}, "format": fmt})
    assert ei.value.details[0]["field"] == "format" and f"{100 * height}x{height}" in ei.value.message
    ok = process(data, {"resize": {"height": height // 2, "upscale": True}, "format": fmt},
                 compute_metrics=False)
    assert ok.facts["output"]["width"] == 100 * (height // 2)


def test_byte_cap() -> None:
    data = g.photo_bytes(64, 64, "png")
    assert code_of(data, limits=Limits(max_bytes=len(data) - 1)) == "too_large"
    process(data, {}, Limits(max_bytes=len(data)))


def test_frame_cap() -> None:
    data = g.animated_gif(7, 24, 24)
    with pytest.raises(TooManyFrames) as ei:
        process(data, {}, Limits(max_frames=6))
    assert ei.value.details == {"frames": 7, "max_frames": 6}
    assert process(data, {}, Limits(max_frames=7)).facts["input"]["frames"] == 7


def test_recipe_frame_cap_when_keeping_animation() -> None:
    data = g.animated_gif(5, 24, 24)
    assert code_of(data, {"animation": {"keep": True, "max_frames": 4}}) == "too_many_frames"


def test_output_cap() -> None:
    data = g.photo_bytes(200, 200, "png")
    with pytest.raises(OutputTooLarge) as ei:
        process(data, {"format": "png"}, Limits(max_output_bytes=1000))
    assert ei.value.code == "output_too_large" and ei.value.details["max_output_bytes"] == 1000


def test_invalid_recipe_through_process() -> None:
    with pytest.raises(InvalidRecipe) as ei:
        process(g.photo_bytes(32, 32, "png"), {"resize": {"width": -1}, "format": "tga"})
    assert [d["field"] for d in ei.value.details] == ["resize.width", "format"]


def test_invalid_watermark_image_is_invalid_recipe() -> None:
    data = g.photo_bytes(64, 64, "png")
    for b64 in ("!!!notbase64!!!", "aGVsbG8gd29ybGQ="):  # bad base64, then base64 of text
        with pytest.raises(InvalidRecipe) as ei:
            process(data, {"watermark": {"image_b64": b64}})
        assert ei.value.details[0]["field"] == "watermark.image_b64"


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "gif", "tiff"])
def test_allowlisted_formats_open(fmt: str) -> None:
    data = g.photo_bytes(40, 30, fmt)
    opened = decode_bytes(data, Limits())
    assert opened.format == fmt and (opened.width, opened.height) == (40, 30)
    assert sniff_format(data) == fmt


def test_open_reads_header_only() -> None:
    opened = open_image(g.photo_bytes(400, 300, "png"), Limits())
    assert getattr(opened.image, "_im", None) is None  # pixels not decoded yet
    assert (opened.width, opened.height, opened.frames) == (400, 300, 1)


def test_errors_carry_stable_codes_and_http_status() -> None:
    cases = {
        "unsupported_format": (g.text_bytes(), None),
        "corrupt_image": (g.truncated(g.photo_bytes(64, 64, "png")), None),
        "too_many_pixels": (g.png_header_only(20000, 10000), None),
        "too_large": (g.photo_bytes(64, 64, "png"), Limits(max_bytes=10)),
        "too_many_frames": (g.animated_gif(3, 8, 8), Limits(max_frames=2)),
    }
    for code, (data, limits) in cases.items():
        with pytest.raises(ImageError) as ei:
            process(data, {}, limits)
        assert ei.value.code == code
        assert ei.value.to_dict()["code"] == code and ei.value.http_status in (413, 415, 422)


def test_decode_of_every_error_leaves_pillow_usable() -> None:
    for data in (g.text_bytes(), g.truncated(g.photo_bytes(64, 64, "jpeg")), g.png_header_only(20000, 10000)):
        with pytest.raises(ImageError):
            process(data, {})
    im = Image.open(io.BytesIO(g.photo_bytes(8, 8, "png")))
    im.load()
