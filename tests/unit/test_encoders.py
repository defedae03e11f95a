"""The extra encoders and inputs: mozjpeg / jpegli JPEGs, JPEG XL out and in, HEIC/HEIF in."""

from __future__ import annotations

import io
import time

import imagegen as g
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from imagepipe.core import process
from imagepipe.core.encode import ENCODERS, codec_versions, split_encoder
from imagepipe.core.jpegenc import has_mozjpeg, insert_metadata
from imagepipe.core.limits import Limits
from imagepipe.core.metrics import ssim
from imagepipe.errors import CorruptImage, InvalidRecipe, TooManyPixels


def open_out(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.fixture(scope="module")
def photo() -> bytes:
    return g.photo_bytes(480, 320, "png", seed=3)


# --- JPEG encoders ------------------------------------------------------------------------------


def test_libvips_jpeg_is_mozjpeg() -> None:
    assert has_mozjpeg()  # trellis quantisation changes the bytes: it is not plain libjpeg-turbo


@pytest.mark.parametrize("encoder", ["turbo", "mozjpeg", "jpegli"])
def test_each_jpeg_encoder_writes_a_faithful_jpeg(photo: bytes, encoder: str) -> None:
    r = process(photo, {"format": "jpeg", "quality": 85, "jpeg": {"encoder": encoder}})
    out = open_out(r.data)
    assert out.format == "JPEG" and out.size == (480, 320)
    assert r.facts["output"]["encoder"] == f"jpeg:{encoder}"
    assert r.facts["metrics"]["ssim"] > 0.95
    assert ssim(Image.open(io.BytesIO(photo)).convert("RGB"), out.convert("RGB")) > 0.95


def test_mozjpeg_is_smaller_than_turbo_at_equal_quality(photo: bytes) -> None:
    sizes = {e: len(process(photo, {"format": "jpeg", "quality": 80, "jpeg": {"encoder": e}}).data)
             for e in ("turbo", "mozjpeg")}
    assert sizes["mozjpeg"] < sizes["turbo"]


def test_encoders_differ_and_mozjpeg_honours_progressive_and_subsampling(photo: bytes) -> None:
    outs = {e: process(photo, {"format": "jpeg", "quality": 80, "jpeg": {"encoder": e}}).data
            for e in ("turbo", "mozjpeg", "jpegli")}
    assert len(set(outs.values())) == 3
    moz = open_out(outs["mozjpeg"])
    assert moz.info.get("progressive") == 1 and JpegImagePlugin.get_sampling(moz) == 2  # 4:2:0
    r = process(photo, {"format": "jpeg", "quality": 80,
                        "jpeg": {"encoder": "mozjpeg", "progressive": False, "subsampling": "4:4:4"}})
    seq = open_out(r.data)
    assert not seq.info.get("progressive") and JpegImagePlugin.get_sampling(seq) == 0  # 4:4:4


def test_mozjpeg_quant_table_is_honoured(photo: bytes) -> None:
    def enc(**jpeg: object) -> bytes:
        return process(photo, {"format": "jpeg", "quality": 80, "jpeg": {"encoder": "mozjpeg", **jpeg}}).data

    default, t3, t2, t0 = enc(), enc(quant_table=3), enc(quant_table=2), enc(quant_table=0)
    assert default == t3  # None = libvips' table 3
    assert len({t3, t2, t0}) == 3
    tables = [open_out(d).quantization[0] for d in (t3, t2, t0)]
    assert tables[0] != tables[1] != tables[2]
    # other encoders do not read it (like webp.method on a JPEG)
    turbo = {"format": "jpeg", "quality": 80}
    assert process(photo, {**turbo, "jpeg": {"quant_table": 2}}).data == process(photo, turbo).data


def test_unsupported_subsampling_is_a_typed_error(photo: bytes) -> None:
    with pytest.raises(InvalidRecipe) as ei:
        process(photo, {"format": "jpeg", "jpeg": {"encoder": "mozjpeg", "subsampling": "4:2:2"}})
    assert ei.value.details[0]["field"] == "jpeg.subsampling"
    with pytest.raises(InvalidRecipe) as ei:
        process(photo, {"format": "jpeg", "jpeg": {"encoder": "jpegli", "subsampling": "4:4:4"}})
    assert ei.value.details[0]["field"] == "jpeg.subsampling"


@pytest.mark.parametrize("encoder", ["mozjpeg", "jpegli"])
def test_metadata_is_embedded_by_every_jpeg_encoder(encoder: str) -> None:
    src = g.with_icc(g.photo_like(96, 64), "jpeg", g.adobe_like_icc(),
                     exif=g.exif_bytes(make="Cam", model="X1", copyright="(c) Someone"))
    r = process(src, {"format": "jpeg", "metadata": "keep", "color": "keep", "jpeg": {"encoder": encoder}})
    out = open_out(r.data)
    assert out.info.get("icc_profile") == g.adobe_like_icc()
    assert out.getexif().get(0x8298) == "(c) Someone"
    stripped = open_out(process(src, {"format": "jpeg", "jpeg": {"encoder": encoder}}).data)
    assert not stripped.info.get("icc_profile") and not stripped.getexif()


def test_insert_metadata_splits_a_large_icc_profile() -> None:
    base = process(g.photo_bytes(32, 32, "png"), {"format": "jpeg", "jpeg": {"encoder": "jpegli"}}).data
    icc = bytes(range(256)) * 600  # 153,600 bytes: three APP2 chunks
    out = open_out(insert_metadata(base, None, icc))
    assert out.info["icc_profile"] == icc


@pytest.mark.parametrize("encoder", ["mozjpeg", "jpegli"])
def test_gray_and_alpha_inputs(encoder: str) -> None:
    gray = process(g.photo_bytes(64, 48, "png", mode="L"), {"format": "jpeg", "jpeg": {"encoder": encoder}})
    assert open_out(gray.data).size == (64, 48)
    logo = process(g.encode(g.rgba_logo(64, 64), "png"), {"format": "jpeg", "jpeg": {"encoder": encoder}})
    corner = open_out(logo.data).convert("RGB").getpixel((1, 1))
    assert min(corner) > 240  # alpha flattened onto the white background


# --- JPEG XL --------------------------------------------------------------------------------------


def test_jxl_output_lossy_effort_and_lossless(photo: bytes) -> None:
    r = process(photo, {"format": "jxl", "quality": 80})
    out = open_out(r.data)
    assert out.format == "JXL" and out.size == (480, 320)
    assert r.facts["output"]["content_type"] == "image/jxl" and r.facts["output"]["extension"] == "jxl"
    assert r.facts["output"]["encoder"] == "jxl" and r.facts["metrics"]["ssim"] > 0.95
    fast = process(photo, {"format": "jxl", "quality": 80, "jxl": {"effort": 1}})
    assert fast.data != r.data
    lossless = process(photo, {"format": "jxl", "jxl": {"lossless": True, "effort": 2}})
    assert lossless.facts["metrics"]["psnr"] == 100.0


def test_jxl_keeps_alpha_and_gray() -> None:
    r = process(g.encode(g.rgba_logo(64, 64), "png"), {"format": "jxl"})
    assert open_out(r.data).mode == "RGBA"
    r = process(g.photo_bytes(64, 48, "png", mode="L"), {"format": "jxl"})
    assert open_out(r.data).mode == "L"


def test_jxl_keeps_exif_but_refuses_a_non_srgb_profile() -> None:
    src = g.with_icc(g.photo_like(64, 48), "jpeg", g.adobe_like_icc(), exif=g.exif_bytes(copyright="(c) Me"))
    r = process(src, {"format": "jxl", "metadata": "keep"})  # converted to sRGB: nothing lost
    assert open_out(r.data).getexif().get(0x8298) == "(c) Me"
    with pytest.raises(InvalidRecipe) as ei:
        process(src, {"format": "jxl", "metadata": "keep", "color": "keep"})
    assert ei.value.details[0]["field"] == "color"


def test_jxl_input_is_decoded_and_original_stays_jxl() -> None:
    src = g.encode(g.photo_like(120, 80), "jxl", quality=90)
    r = process(src, {"format": "png"})
    assert r.facts["input"]["format"] == "jxl" and open_out(r.data).size == (120, 80)
    assert process(src, {}).facts["output"]["format"] == "jxl"


def test_jxl_pixel_cap_is_checked_from_the_header_before_decoding() -> None:
    t = time.perf_counter()
    with pytest.raises(TooManyPixels):
        process(g.jxl_header_only(20000, 15000), {})
    assert time.perf_counter() - t < 1.0
    with pytest.raises(TooManyPixels):
        process(g.encode(g.photo_like(120, 80), "jxl"), {}, Limits(max_pixels=5000))


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_jxl_and_heif_are_corrupt(keep: float) -> None:
    for fmt in ("jxl", "heif"):
        with pytest.raises(CorruptImage):
            process(g.truncated(g.encode(g.photo_like(96, 64), fmt, quality=80), keep), {})
    with pytest.raises(CorruptImage):
        process(g.jxl_header_only(64, 64), {})


# --- HEIC / HEIF in --------------------------------------------------------------------------------


def test_heic_input_becomes_jpeg_by_default() -> None:
    src = g.encode(g.photo_like(160, 100), "heif", quality=90)
    assert src[4:12] == b"ftypheic"
    r = process(src, {})
    out = open_out(r.data)
    assert r.facts["input"]["format"] == "heif" and out.format == "JPEG" and out.size == (160, 100)
    assert r.facts["metrics"]["ssim"] > 0.9
    assert ssim(g.photo_like(160, 100), out.convert("RGB")) > 0.85  # the pixels survive decode + encode


def test_heic_pixel_cap_and_resize() -> None:
    src = g.encode(g.photo_like(160, 100), "heif")
    with pytest.raises(TooManyPixels):
        process(src, {}, Limits(max_pixels=10_000))
    assert open_out(process(src, {"resize": {"width": 80}, "format": "webp"}).data).size == (80, 50)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_heic_orientation_is_applied_once(orientation: int) -> None:
    im = Image.new("RGB", (64, 32), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 16, 16))  # red block top-left as stored
    src = g.encode(im, "heif", quality=95, exif=g.exif_bytes(orientation=orientation))
    out = open_out(process(src, {"format": "png"}).data)
    assert out.size == ((32, 64) if orientation in (6, 8) else (64, 32))
    a = np.asarray(out, dtype=int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 2] < 120))
    where = ("left" if xs.mean() < out.width / 2 else "right",
             "top" if ys.mean() < out.height / 2 else "bottom")
    assert where == {3: ("right", "bottom"), 6: ("right", "top"), 8: ("left", "bottom")}[orientation]


def test_heic_icc_profile_is_applied() -> None:
    im = Image.new("RGB", (48, 48), (90, 160, 60))
    plain = process(g.encode(im, "heif", quality=95), {"format": "png"})
    tagged = process(g.encode(im, "heif", quality=95, icc_profile=g.adobe_like_icc()), {"format": "png"})
    assert tagged.facts["input"]["icc_profile"] == "ImagePipe test AdobeRGB-like"
    g_plain = open_out(plain.data).getpixel((24, 24))
    g_tagged = open_out(tagged.data).getpixel((24, 24))
    assert abs(g_plain[0] - g_tagged[0]) > 40  # a wide-gamut green converted to sRGB loses its red


# --- names ------------------------------------------------------------------------------------------


def test_encoder_names_and_versions() -> None:
    assert ENCODERS == ("jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl", "png", "gif")
    assert split_encoder("jpeg:mozjpeg") == ("jpeg", {"jpeg": {"encoder": "mozjpeg"}})
    assert split_encoder("webp") == ("webp", None)
    v = codec_versions()
    assert v["pillow"] and v["libvips"] and v["pyjpegli"] and v["pillow_jxl_plugin"] and v["pillow_heif"]


def test_both_sniffers_know_heic_heif_and_jxl() -> None:
    from imagepipe.service.sniff import SNIFF_BYTES, sniff_image_type
    from pipeline.client import sniff_content_type

    heic = g.encode(g.photo_like(32, 24), "heif")
    jxl = g.encode(g.photo_like(32, 24), "jxl")
    jxl_box = io.BytesIO()
    g.photo_like(32, 24).save(jxl_box, "JXL", use_container=True)
    for data, ct in ((heic, "image/heic"), (jxl, "image/jxl"), (jxl_box.getvalue(), "image/jxl")):
        assert sniff_image_type(data[:SNIFF_BYTES]) == ct
        assert sniff_content_type(data, "upload") == ct
