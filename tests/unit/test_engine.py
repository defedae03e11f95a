"""The engine end to end on in-memory images: every input mode × output format, every recipe
field, orientation, colour, metadata, watermark, animation, facts, and the sweep API.

Every test runs on both engines (``IMAGEPIPE_ENGINE=vips``, the default, and ``pillow``);
``tests/unit/test_engine_parity.py`` compares their outputs with each other."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from imagepipe.core import Limits, encode_variant, measure, prepare, process
from imagepipe.core.transform import SRGB_ICC
from imagepipe.errors import InvalidRecipe, TargetUnreachable
from tests.unit import imagegen as g

MODES = ["RGB", "RGBA", "L", "LA", "P", "Pt", "CMYK", "I;16", "1"]
FORMATS = ["jpeg", "png", "webp", "avif", "gif"]
PIL_NAME = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF"}


@pytest.fixture(autouse=True, params=["vips", "pillow"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the libvips decoder (default) and on the all-Pillow path."""
    monkeypatch.setenv("IMAGEPIPE_ENGINE", request.param)
    return str(request.param)


def open_out(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def source_for(mode: str, w: int = 96, h: int = 64) -> bytes:
    """Encode a ``mode`` test image in a container that stores that mode natively."""
    if mode == "CMYK":
        return g.photo_bytes(w, h, "jpeg", mode="CMYK", quality=95)
    if mode == "I;16":
        return g.photo_bytes(w, h, "png", mode="I;16")
    return g.photo_bytes(w, h, "png", mode=mode)


# --- every input mode × every output format -------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_to_every_format(mode: str, fmt: str) -> None:
    src = source_for(mode)
    assert open_out(src).mode == ("P" if mode == "Pt" else mode)
    r = process(src, {"format": fmt, "resize": {"width": 48}, "background": "#00ff00"})
    out = open_out(r.data)
    assert out.format == PIL_NAME[fmt]
    assert out.size == (48, 32)
    assert r.facts["output"]["format"] == fmt and r.facts["output"]["bytes"] == len(r.data)
    alpha_in = mode in ("RGBA", "LA", "Pt")
    if fmt == "jpeg":
        assert out.mode in ("RGB", "L")
        if alpha_in:  # the transparent top-left corner is flattened onto the background
            px = out.convert("RGB").getpixel((2, 2))
            if out.mode == "RGB":
                assert px[1] > 200 and px[0] < 60 and px[2] < 60, px
            else:  # LA → L: background luma of pure green
                assert abs(px[0] - round(0.587 * 255)) < 12, px
    elif fmt in ("png", "webp", "avif") and alpha_in:
        assert out.mode in ("RGBA", "LA"), out.mode
        assert out.getchannel("A").getpixel((2, 2)) < 10  # transparency kept
    elif fmt == "gif" and alpha_in:
        assert "transparency" in out.info
        assert out.getpixel((2, 2)) == out.info["transparency"]
    if fmt in ("png", "webp", "avif", "jpeg") and mode in ("RGB", "P", "CMYK"):
        assert r.facts["metrics"]["ssim"] > 0.85


def test_16bit_png_stays_16bit_for_png_and_is_scaled_for_8bit_formats() -> None:
    src = source_for("I;16")
    ref = np.asarray(open_out(src), dtype=np.uint16)
    r = process(src, {"format": "png"})
    out = open_out(r.data)
    assert out.mode.startswith("I;16") or out.mode == "I"
    assert np.array_equal(np.asarray(out).astype(np.uint16), ref)
    r8 = process(src, {"format": "webp", "webp": {"lossless": True}})
    got = np.asarray(open_out(r8.data).convert("L"), dtype=np.int32)
    assert np.abs(got - (ref >> 8)).max() <= 1  # scaled, not clipped at 255


def test_cmyk_becomes_rgb_with_plausible_colours() -> None:
    rgb = g.photo_like(64, 48)
    src = g.encode(rgb.convert("CMYK"), "jpeg", quality=95)
    out = open_out(process(src, {"format": "png"}).data)
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(rgb, dtype=int)).mean() < 12


# --- resize ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resize", "size"),
    [
        ({"width": 100}, (100, 50)),
        ({"height": 50}, (100, 50)),
        ({"width": 100, "height": 100}, (100, 50)),  # inside (default)
        ({"width": 100, "height": 100, "fit": "contain"}, (100, 100)),  # letterboxed
        ({"width": 100, "height": 100, "fit": "cover"}, (100, 100)),
        ({"width": 100, "height": 30, "fit": "fill"}, (100, 30)),
        ({"width": 1000}, (400, 200)),  # no upscale
        ({"width": 1000, "upscale": True}, (1000, 500)),
        ({"width": 1000, "height": 1000, "fit": "cover"}, (400, 200)),  # cover without upscale
        ({"width": 300, "height": 300, "fit": "cover"}, (300, 200)),  # crop only where larger
        ({"width": 600, "height": 600, "fit": "cover", "upscale": True}, (600, 600)),
        ({"width": 1000, "height": 100, "fit": "fill"}, (400, 100)),
        ({"width": 1000, "height": 100, "fit": "fill", "upscale": True}, (1000, 100)),
        ({"width": 800, "height": 800, "fit": "contain"}, (800, 800)),  # pad, don't upscale
        ({"width": 3, "height": 3}, (3, 2)),
        ({"width": 1}, (1, 1)),
    ],
)
def test_resize_fits(resize: dict, size: tuple[int, int]) -> None:
    r = process(g.photo_bytes(400, 200, "png"), {"resize": resize, "format": "png"})
    assert open_out(r.data).size == size == (r.facts["output"]["width"], r.facts["output"]["height"])


def test_contain_letterbox_uses_background_or_transparency() -> None:
    r = process(g.photo_bytes(200, 100, "png"), {"resize": {"width": 100, "height": 100, "fit": "contain"},
                                               "format": "png", "background": "#ff0000"})
    out = open_out(r.data)
    assert out.getpixel((50, 2)) == (255, 0, 0) and out.getpixel((50, 97)) == (255, 0, 0)
    assert out.getpixel((50, 50)) != (255, 0, 0)
    r = process(g.photo_bytes(200, 100, "png", mode="RGBA"),
                {"resize": {"width": 100, "height": 100, "fit": "contain"}, "format": "png"})
    assert open_out(r.data).getpixel((50, 2))[3] == 0


def test_cover_crops_the_centre() -> None:
    im = Image.new("RGB", (300, 100), (255, 0, 0))
    im.paste((0, 0, 255), (100, 0, 200, 100))  # blue centre third
    out = open_out(process(g.encode(im, "png"), {"resize": {"width": 50, "height": 50, "fit": "cover"},
                                                  "format": "png"}).data)
    a = np.asarray(out)
    assert a[:, 5:45, 2].min() > 200 and a[:, 5:45, 0].max() < 50  # all blue


@pytest.mark.parametrize("filt", ["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"])
def test_every_filter(filt: str) -> None:
    src = g.photo_bytes(160, 120, "png")
    out = open_out(process(src, {"resize": {"width": 40, "filter": filt}, "format": "png"}).data)
    assert out.size == (40, 30)
    if filt != "lanczos":
        ref = open_out(process(src, {"resize": {"width": 40}, "format": "png"}).data)
        assert out.tobytes() != ref.tobytes()


def test_jpeg_draft_fast_path_keeps_exact_size_and_quality(engine: str) -> None:
    src = g.photo_bytes(1600, 1200, "jpeg", quality=92)
    r = process(src, {"resize": {"width": 200}, "format": "png"})
    shrink = "vips_thumbnail:1600x1200->200x150" if engine == "vips" else "jpeg_draft"
    assert any(f.startswith(shrink) for f in r.facts["fast_paths"])
    assert open_out(r.data).size == (200, 150)
    full = Image.open(io.BytesIO(src)).resize((200, 150), Image.Resampling.LANCZOS)
    from imagepipe.core.metrics import compare

    assert compare(full, open_out(r.data))["ssim"] > 0.97


def test_no_draft_when_no_resize(engine: str) -> None:
    r = process(g.photo_bytes(400, 300, "jpeg"), {"format": "png"})
    assert r.facts["fast_paths"] == (["vips_decode:400x300"] if engine == "vips" else [])
    assert open_out(r.data).size == (400, 300)


# --- orientation ----------------------------------------------------------------------------------


def _marker_image() -> Image.Image:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))  # red block in the stored top-left corner
    return im


# where the red block ends up (x, y of its centre, relative) for each EXIF orientation
_EXPECTED = {1: ("left", "top"), 2: ("right", "top"), 3: ("right", "bottom"), 4: ("left", "bottom"),
             5: ("left", "top"), 6: ("right", "top"), 7: ("right", "bottom"), 8: ("left", "bottom")}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("resize", [None, {"width": 10}])
def test_exif_orientation_applied_and_tag_dropped(orientation: int, resize: dict | None) -> None:
    src = g.with_exif_orientation(_marker_image(), orientation)
    r = process(src, {"format": "png", "metadata": "keep", "resize": resize})
    out = open_out(r.data)
    w, h = (20, 40) if orientation >= 5 else (40, 20)
    if resize:
        w, h = 10, round(10 * h / w)
    assert out.size == (w, h)
    a = np.asarray(out, dtype=int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 2] < 120))
    horiz = "left" if xs.mean() < out.width / 2 else "right"
    vert = "top" if ys.mean() < out.height / 2 else "bottom"
    assert (horiz, vert) == _EXPECTED[orientation]
    assert out.getexif().get(0x0112) in (None, 1)
    assert r.facts["input"]["exif"]["orientation"] == orientation
    assert r.facts["input"]["width"] == 40  # input facts are the stored dimensions


def test_orientation_with_cover_and_draft() -> None:
    src = g.with_exif_orientation(g.photo_like(1200, 600), 6)
    r = process(src, {"resize": {"width": 100, "height": 120, "fit": "cover"}, "format": "jpeg"})
    assert open_out(r.data).size == (100, 120)
    assert r.facts["fast_paths"]


# --- colour -------------------------------------------------------------------------------------


def test_icc_converted_to_srgb() -> None:
    im = g.photo_like(64, 48)
    icc = g.adobe_like_icc()
    src = g.with_icc(im, "png", icc)
    r = process(src, {"format": "png"})
    assert r.facts["input"]["icc_profile"] == "ImagePipe test AdobeRGB-like"
    out = open_out(r.data)
    expected = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         ImageCms.createProfile("sRGB"))
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(im, dtype=int)).mean() > 3  # really changed
    assert "icc_profile" not in out.info  # stripped by default


def test_icc_keep_leaves_pixels_and_metadata_keep_embeds_the_right_profile() -> None:
    im = g.photo_like(64, 48)
    icc = g.adobe_like_icc()
    src = g.with_icc(im, "png", icc)
    kept = open_out(process(src, {"format": "png", "color": "keep", "metadata": "keep"}).data)
    assert kept.tobytes() == im.tobytes() and kept.info["icc_profile"] == icc
    conv = open_out(process(src, {"format": "png", "color": "srgb", "metadata": "keep"}).data)
    assert conv.info["icc_profile"] == SRGB_ICC


def test_srgb_profile_is_not_reconverted() -> None:
    im = g.photo_like(48, 32)
    out = open_out(process(g.with_icc(im, "png", g.srgb_icc()), {"format": "png"}).data)
    assert out.tobytes() == im.tobytes()


# --- metadata -----------------------------------------------------------------------------------

_EXIF = {"make": "Canon", "model": "Canon EOS R5", "gps": True, "artist": "Ann", "copyright": "(c) Ann 2026"}


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_metadata_modes(fmt: str) -> None:
    src = g.encode(g.photo_like(64, 48), "jpeg", quality=90, exif=g.exif_bytes(orientation=1, **_EXIF),
                   icc_profile=g.adobe_like_icc())
    facts_exif = process(src, {"format": fmt}).facts["input"]["exif"]
    assert facts_exif == {"camera": "Canon EOS R5", "gps_present": True, "orientation": 1}

    stripped = open_out(process(src, {"format": fmt, "metadata": "strip"}).data)
    assert len(stripped.getexif()) == 0 and not stripped.info.get("icc_profile")

    kept = open_out(process(src, {"format": fmt, "metadata": "keep"}).data)
    ex = kept.getexif()
    assert ex.get(0x010F) == "Canon" and ex.get(0x8298) == "(c) Ann 2026" and 0x8825 in ex
    assert 0x0112 not in ex
    assert kept.info.get("icc_profile") == SRGB_ICC

    cr = open_out(process(src, {"format": fmt, "metadata": "keep_copyright_icc"}).data)
    ex = cr.getexif()
    assert dict(ex) == {0x013B: "Ann", 0x8298: "(c) Ann 2026"}
    assert cr.info.get("icc_profile") == SRGB_ICC


def test_gif_output_carries_no_metadata() -> None:
    src = g.encode(g.photo_like(32, 32), "jpeg", exif=g.exif_bytes(**_EXIF))
    out = open_out(process(src, {"format": "gif", "metadata": "keep"}).data)
    assert len(out.getexif()) == 0


# --- ops ----------------------------------------------------------------------------------------


def _detail(im: Image.Image) -> float:
    a = np.asarray(im.convert("L"), dtype=float)
    lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.var())


def test_ops_grayscale_sharpen_blur() -> None:
    src = g.photo_bytes(96, 64, "png")
    base = open_out(process(src, {"format": "png"}).data)
    gray = open_out(process(src, {"format": "png", "ops": {"grayscale": True}}).data)
    assert gray.mode == "L"
    gj = open_out(process(src, {"format": "jpeg", "ops": {"grayscale": True}}).data)
    assert gj.mode == "L"
    ga = open_out(process(g.photo_bytes(96, 64, "png", mode="RGBA"),
                          {"format": "png", "ops": {"grayscale": True}}).data)
    assert ga.mode == "LA"
    sharp = open_out(process(src, {"format": "png", "ops": {"sharpen": 2.0}}).data)
    blur = open_out(process(src, {"format": "png", "ops": {"blur": 2.0}}).data)
    assert _detail(sharp) > 1.2 * _detail(base) > 1.2 * _detail(blur)


# --- watermark ----------------------------------------------------------------------------------


def _changed(src: bytes, recipe: dict) -> np.ndarray:
    before = np.asarray(open_out(process(src, {"format": "png"}).data), dtype=int)
    after = np.asarray(open_out(process(src, {"format": "png", **recipe}).data), dtype=int)
    return np.abs(after - before).sum(axis=-1) > 24


_GRID = {"top-left": (0, 0), "top": (1, 0), "top-right": (2, 0), "left": (0, 1), "center": (1, 1),
         "right": (2, 1), "bottom-left": (0, 2), "bottom": (1, 2), "bottom-right": (2, 2)}


@pytest.mark.parametrize("position", list(_GRID))
def test_text_watermark_lands_in_its_grid_cell(position: str) -> None:
    src = g.photo_bytes(300, 240, "png")
    mask = _changed(src, {"watermark": {"text": "© ImagePipe", "position": position, "opacity": 1.0,
                                        "scale": 0.3}})
    ys, xs = np.nonzero(mask)
    assert len(xs) > 100
    assert (int(xs.mean() * 3 // 300), int(ys.mean() * 3 // 240)) == _GRID[position]
    width = xs.max() - xs.min() + 1
    assert 0.2 * 300 <= width <= 0.32 * 300  # scale = mark width / output width


def test_image_watermark_tiled_and_opacity() -> None:
    src = g.photo_bytes(300, 200, "png")
    logo = base64.b64encode(g.encode(g.rgba_logo(64, 64), "png")).decode()
    tiled = _changed(src, {"watermark": {"image_b64": logo, "position": "tiled", "scale": 0.15,
                                         "opacity": 1}})
    # marks all over the image: every quadrant is touched
    for qy in (slice(0, 100), slice(100, 200)):
        for qx in (slice(0, 150), slice(150, 300)):
            assert tiled[qy, qx].any()
    one = _changed(src, {"watermark": {"image_b64": logo, "position": "center", "scale": 0.15, "opacity": 1}})
    assert tiled.sum() > 4 * one.sum() > 0
    faint = _changed(src, {"watermark": {"image_b64": logo, "position": "center", "scale": 0.15,
                                         "opacity": 0.05}})
    assert faint.sum() < one.sum()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_tiled_watermark_is_every_tile_pasted_in_rows_not_one_paste_per_tile(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagepipe.core.recipe import Watermark
    from imagepipe.core.watermark import apply_watermark, positions, render_mark

    # a 2-px mark with no margin on 300x240: 6000 tiles; a paste per tile made large images take
    # minutes (a valid recipe timing the processor out); rows + columns pastes are enough
    base = g.photo_like(300, 240, mode="RGBA" if mode == "RGBA" else "RGB").convert(mode)
    logo = base64.b64encode(g.encode(g.rgba_logo(64, 64), "png")).decode()
    wm = Watermark(image_b64=logo, position="tiled", scale=0.01, margin=0.0, opacity=0.7)
    mark = render_mark(wm, *base.size)
    spots = positions(wm, *base.size, mark.width, mark.height)
    assert len(spots) == 6000
    expected = base.convert("RGBA") if mode == "RGBA" else base.convert("RGB")
    for xy in spots:  # the definition: the mark composited at every spot
        if mode == "RGBA":
            expected.alpha_composite(mark, dest=xy)
        else:
            expected.paste(mark.convert("RGB"), xy, mask=mark.getchannel("A"))
    calls = {"n": 0}
    for name in ("paste", "alpha_composite"):
        real = getattr(Image.Image, name)

        def counting(self: Image.Image, *a: object, _real: object = real, **k: object) -> object:
            calls["n"] += 1
            return _real(self, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(Image.Image, name, counting)
    out = apply_watermark(base, wm)
    monkeypatch.undo()
    assert calls["n"] <= 2 * (100 + 60)  # columns + rows (+ the pastes alpha_composite makes)
    if mode == "L":
        expected = expected.convert("L")
        assert np.abs(np.asarray(out, dtype=int) - np.asarray(expected, dtype=int)).max() <= 1
    else:
        assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_watermark_on_grayscale_and_alpha_images() -> None:
    for mode in ("L", "RGBA", "LA"):
        src = g.photo_bytes(200, 100, "png", mode=mode)
        mask = _changed(src, {"watermark": {"text": "MARK", "opacity": 1.0}}) if mode == "RGBA" else None
        r = process(src, {"format": "png", "watermark": {"text": "MARK", "opacity": 1.0}})
        assert open_out(r.data).mode == mode
        if mask is not None:
            assert mask.any()


# --- animation ------------------------------------------------------------------------------------


def test_animation_first_frame_by_default() -> None:
    r = process(g.animated_gif(6, 60, 40), {"format": "webp"})
    out = open_out(r.data)
    assert getattr(out, "n_frames", 1) == 1 and r.facts["input"]["frames"] == 6
    assert r.facts["output"]["frames"] == 1


@pytest.mark.parametrize("src_kind", ["gif", "webp"])
@pytest.mark.parametrize("fmt", ["gif", "webp", "original"])
def test_animation_kept(src_kind: str, fmt: str) -> None:
    make = g.animated_gif if src_kind == "gif" else g.animated_webp
    src = make(6, 60, 40, duration=70)
    r = process(src, {"format": fmt, "animation": {"keep": True}, "resize": {"width": 30}})
    out = open_out(r.data)
    assert out.n_frames == 6 == r.facts["output"]["frames"]
    assert out.size == (30, 20)
    frames = []
    for i in range(out.n_frames):
        out.seek(i)
        frames.append(np.asarray(out.convert("RGB")).copy())
        assert out.info.get("duration") == 70
    assert not np.array_equal(frames[0], frames[-1])  # the frames really differ


@pytest.mark.parametrize(("loop", "expected"), [(None, {"gif": None, "webp": 1, "png": 1}),
                                              (0, {"gif": 0, "webp": 0, "png": 0}),
                                              (3, {"gif": 3, "webp": 3, "png": 3})])
def test_animation_keeps_the_source_loop_count(loop: int | None, expected: dict[str, int | None]) -> None:
    # a GIF without a NETSCAPE loop block plays once: it must not come out looping forever
    frames = [Image.new("RGB", (24, 16), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=60,
                   **({} if loop is None else {"loop": loop}))
    for fmt, want in expected.items():
        out = open_out(process(buf.getvalue(), {"format": fmt, "animation": {"keep": True}}).data)
        assert getattr(out, "n_frames", 1) == 3
        assert out.info.get("loop") == want, fmt


def test_animation_to_jpeg_is_an_invalid_recipe() -> None:
    with pytest.raises(InvalidRecipe) as ei:
        process(g.animated_gif(3, 20, 20), {"format": "jpeg", "animation": {"keep": True}})
    assert ei.value.details[0]["field"] == "animation.keep"


# --- format options -----------------------------------------------------------------------------


def test_original_format() -> None:
    for fmt, want in [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("gif", "GIF"), ("tiff", "PNG"),
                      ("avif", "AVIF")]:
        assert open_out(process(g.photo_bytes(32, 24, fmt), {}).data).format == want


def test_jpeg_options() -> None:
    src = g.photo_bytes(256, 192, "png")
    prog = open_out(process(src, {"format": "jpeg", "jpeg": {"progressive": True}}).data)
    base = open_out(process(src, {"format": "jpeg", "jpeg": {"progressive": False}}).data)
    assert prog.info.get("progressive") and not base.info.get("progressive")
    for ss, code in (("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2)):
        out = open_out(process(src, {"format": "jpeg", "jpeg": {"subsampling": ss}}).data)
        assert JpegImagePlugin.get_sampling(out) == code
    opt = process(src, {"format": "jpeg", "jpeg": {"optimize": True, "progressive": False}}).data
    plain = process(src, {"format": "jpeg", "jpeg": {"optimize": False, "progressive": False}}).data
    assert len(opt) < len(plain)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_quality_controls_size_and_fidelity(fmt: str) -> None:
    src = g.photo_bytes(192, 128, "png")
    lo = process(src, {"format": fmt, "quality": 20})
    hi = process(src, {"format": fmt, "quality": 90})
    assert len(lo.data) < len(hi.data)
    assert lo.facts["metrics"]["ssim"] < hi.facts["metrics"]["ssim"]
    assert lo.facts["metrics"]["psnr"] < hi.facts["metrics"]["psnr"]


def test_png_options() -> None:
    src = g.photo_bytes(128, 96, "png")
    fast = process(src, {"format": "png", "png": {"compress_level": 0}}).data
    small = process(src, {"format": "png", "png": {"compress_level": 9}}).data
    assert len(small) < len(fast)
    pal = open_out(process(src, {"format": "png", "png": {"palette": True, "colors": 16}}).data)
    assert pal.mode == "P" and len(pal.getcolors(256) or []) <= 16
    pal_a = open_out(process(g.photo_bytes(64, 48, "png", mode="RGBA"),
                             {"format": "png", "png": {"palette": True, "colors": 64}}).data)
    assert pal_a.mode == "P" and pal_a.convert("RGBA").getpixel((2, 2))[3] < 10  # alpha survives


def test_webp_options() -> None:
    src = g.photo_bytes(96, 64, "png")
    lossless = open_out(process(src, {"format": "webp", "webp": {"lossless": True}}).data)
    assert lossless.convert("RGB").tobytes() == open_out(src).tobytes()
    m0 = process(src, {"format": "webp", "webp": {"method": 0}}).data
    m6 = process(src, {"format": "webp", "webp": {"method": 6}}).data
    assert m0 != m6


def test_avif_speed_option_changes_encoding() -> None:
    src = g.photo_bytes(96, 64, "png")
    a = process(src, {"format": "avif", "avif": {"speed": 10}}).data
    b = process(src, {"format": "avif", "avif": {"speed": 4}}).data
    assert a != b and open_out(a).format == open_out(b).format == "AVIF"


def test_background_colour_used_for_flattening() -> None:
    src = g.photo_bytes(64, 48, "png", mode="RGBA")
    for bg, want in (("#ff0000", (255, 0, 0)), ("#000", (0, 0, 0))):
        px = open_out(process(src, {"format": "jpeg", "background": bg, "quality": 95}).data).getpixel((3, 3))
        assert all(abs(a - b) < 8 for a, b in zip(px, want, strict=True)), px


# --- facts --------------------------------------------------------------------------------------


def test_facts_shape_and_values() -> None:
    src = g.encode(g.photo_like(400, 300), "jpeg", quality=90, exif=g.exif_bytes(make="Nikon", model="Z 6"),
                   icc_profile=g.adobe_like_icc())
    r = process(src, {"resize": {"width": 200}, "format": "webp"})
    f = r.facts
    json.dumps(f, allow_nan=False)  # JSON-safe
    assert set(f) >= {"input", "output", "compression_ratio", "bits_per_pixel", "metrics", "timings_ms",
                      "recipe_hash"}
    assert set(f["input"]) >= {"format", "width", "height", "mode", "bytes", "frames", "icc_profile", "exif"}
    assert f["input"] | {"exif": None} == {"format": "jpeg", "width": 400, "height": 300, "mode": "RGB",
                                           "bytes": len(src), "frames": 1,
                                           "icc_profile": "ImagePipe test AdobeRGB-like", "exif": None}
    assert f["input"]["exif"] == {"camera": "Nikon Z 6", "gps_present": False, "orientation": None}
    o = f["output"]
    assert {k: o[k] for k in ("format", "width", "height", "mode", "bytes", "frames", "content_type",
                               "extension")} == {"format": "webp", "width": 200, "height": 150, "mode": "RGB",
                                                 "bytes": len(r.data), "frames": 1,
                                                 "content_type": "image/webp", "extension": "webp"}
    assert r.content_type == "image/webp" and r.extension == "webp"
    assert f["compression_ratio"] == pytest.approx(len(src) / len(r.data), rel=1e-3)
    assert f["bits_per_pixel"] == pytest.approx(len(r.data) * 8 / (200 * 150), rel=1e-3)
    assert 0.5 < f["metrics"]["ssim"] <= 1.0 and 20 < f["metrics"]["psnr"] <= 100
    assert set(f["timings_ms"]) == {"decode", "transform", "encode", "metrics", "total"}
    assert all(v >= 0 for v in f["timings_ms"].values())
    assert f["recipe_hash"] == __import__("imagepipe.core", fromlist=["parse_recipe"]).parse_recipe(
        {"resize": {"width": 200}, "format": "webp"}).recipe_hash()


def test_lossless_output_reports_perfect_metrics() -> None:
    r = process(g.photo_bytes(64, 48, "png"), {"format": "png"})
    assert r.facts["metrics"] == {"ssim": 1.0, "psnr": 100.0}


def test_metrics_can_be_skipped() -> None:
    r = process(g.photo_bytes(64, 48, "png"), {"format": "jpeg"}, compute_metrics=False)
    assert r.facts["metrics"] == {"ssim": None, "psnr": None}


def test_limits_default_applies() -> None:
    r = process(g.photo_bytes(64, 48, "png"), {}, Limits())
    assert r.facts["output"]["format"] == "png"


# --- prepare / encode_variant / auto --------------------------------------------------------------


def test_prepare_once_encode_many() -> None:
    p = prepare(g.photo_bytes(640, 480, "jpeg"), {"resize": {"width": 160}})
    assert p.image.size == (160, 120) and p.format == "jpeg"
    sizes = {}
    for fmt in ("jpeg", "webp", "avif", "png"):
        data, facts = encode_variant(p, fmt, 60)
        assert open_out(data).format == PIL_NAME[fmt] and facts["bytes"] == len(data)
        assert facts["width"] == 160 and facts["quality"] == 60
        sizes[fmt] = len(data)
        m = measure(p, data)
        assert 0 < m["ssim"] <= 1
    d444, _ = encode_variant(p, "jpeg", 60, {"jpeg": {"subsampling": "4:4:4"}})
    assert JpegImagePlugin.get_sampling(open_out(d444)) == 0
    with pytest.raises(InvalidRecipe):
        encode_variant(p, "jpeg", 60, {"resize": {"width": 5}})
    with pytest.raises(InvalidRecipe):
        encode_variant(p, "jpeg", 0)
    with pytest.raises(InvalidRecipe):
        encode_variant(p, "best", 50)


def test_auto_quality_meets_ssim_target_with_lowest_quality() -> None:
    src = g.photo_bytes(256, 192, "png")
    r = process(src, {"format": "jpeg", "quality": "auto", "target": {"metric": "ssim", "min": 0.95}})
    q = r.facts["output"]["quality"]
    assert r.facts["metrics"]["ssim"] >= 0.95
    if q > 1:
        lower = process(src, {"format": "jpeg", "quality": q - 1})
        assert lower.facts["metrics"]["ssim"] < 0.95
    assert r.facts["search"]["encodes"] <= 8


def test_auto_quality_max_bytes() -> None:
    src = g.photo_bytes(256, 192, "png")
    r = process(src, {"format": "webp", "quality": "auto", "max_bytes": 4000})
    assert len(r.data) <= 4000
    q = r.facts["output"]["quality"]
    if q < 100:
        assert len(process(src, {"format": "webp", "quality": q + 1}).data) > 4000


def test_auto_unreachable() -> None:
    with pytest.raises(TargetUnreachable) as ei:
        process(g.photo_bytes(128, 96, "png"), {"format": "jpeg", "quality": "auto", "max_bytes": 100})
    assert ei.value.code == "target_unreachable" and ei.value.details["tried"]


def test_ssimulacra2_target_needs_8x8_pixels() -> None:
    # SSIMULACRA2 is implemented (tests/unit/test_ssimulacra2.py); below 8x8 px it is undefined
    with pytest.raises(InvalidRecipe) as ei:
        process(g.photo_bytes(7, 40, "png"),
                {"quality": "auto", "target": {"metric": "ssimulacra2", "min": 70}})
    assert ei.value.details[0]["field"] == "target.metric"


def test_best_format_is_the_smallest_candidate() -> None:
    src = g.photo_bytes(200, 150, "png")
    r = process(src, {"format": "best", "quality": 70})
    assert r.facts["search"]["candidates"] == ["jpeg", "webp", "avif"]
    for fmt in ("jpeg", "webp", "avif"):
        assert len(r.data) <= len(process(src, {"format": fmt, "quality": 70}).data)
    ra = process(g.photo_bytes(64, 48, "png", mode="RGBA"), {"format": "best"})
    assert ra.facts["search"]["candidates"] == ["png", "webp", "avif"]
    assert open_out(ra.data).mode in ("RGBA", "LA")


def test_mpo_camera_jpeg_is_not_treated_as_an_animation() -> None:
    buf = io.BytesIO()
    g.photo_like(64, 48).save(buf, "MPO", save_all=True, append_images=[g.photo_like(32, 24, seed=1)])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    r = process(buf.getvalue(), {"animation": {"keep": True}})
    assert r.facts["input"]["format"] == "jpeg" and r.facts["input"]["frames"] == 2
    out = open_out(r.data)
    assert out.format == "JPEG" and out.size == (64, 48) and r.facts["output"]["frames"] == 1


def test_16bit_png_big_downscale_to_png() -> None:
    # Image.reduce (used by reducing_gap) has no I;16 support: the resize must not use it
    out = open_out(process(g.photo_bytes(400, 300, "png", mode="I;16"), {"resize": {"width": 40},
                                                                        "format": "png"}).data)
    assert out.size == (40, 30) and out.mode.startswith("I;16")


def test_metrics_skipped_with_a_reason_above_the_output_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import imagepipe.core.engine as engine

    monkeypatch.setattr(engine, "MAX_METRIC_OUTPUT_PIXELS", 64 * 48 - 1)
    r = process(g.photo_bytes(64, 48, "png"), {"format": "jpeg"})
    assert r.facts["metrics"]["ssim"] is None and r.facts["metrics"]["psnr"] is None
    assert "metrics cap" in r.facts["metrics"]["skipped"]
    monkeypatch.setattr(engine, "MAX_METRIC_OUTPUT_PIXELS", 64 * 48)
    assert process(g.photo_bytes(64, 48, "png"), {"format": "jpeg"}).facts["metrics"]["ssim"] > 0.5
