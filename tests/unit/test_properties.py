"""Property tests (hypothesis) over random sizes, modes and recipes."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imagepipe.core import process
from imagepipe.core.encode import MAX_SIDE
from imagepipe.errors import InvalidRecipe
from tests.unit import imagegen as g

PIL_NAME = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF"}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.integers(min_value=1, max_value=300)
modes = st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "Pt", "I;16", "1", "CMYK"])
fits = st.sampled_from(["contain", "cover", "fill", "inside"])
formats = st.sampled_from(["jpeg", "png", "webp", "avif", "gif"])


def _source(w: int, h: int, mode: str, seed: int) -> bytes:
    container = "jpeg" if mode == "CMYK" else "png"
    return g.photo_bytes(w, h, container, mode=mode, seed=seed)


@st.composite
def resize_specs(draw: st.DrawFn) -> dict:
    fit = draw(fits)
    width = draw(st.one_of(st.none(), sizes)) if fit in ("contain", "inside") else draw(sizes)
    height = draw(sizes) if width is None else (draw(st.one_of(st.none(), sizes))
                                                if fit in ("contain", "inside") else draw(sizes))
    return {"width": width, "height": height, "fit": fit, "upscale": draw(st.booleans()),
            "filter": draw(st.sampled_from(["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]))}


@SETTINGS
@given(w=sizes, h=sizes, mode=modes, resize=resize_specs(), fmt=formats,
       quality=st.integers(1, 100), seed=st.integers(0, 3))
def test_output_fits_the_box_keeps_aspect_and_decodes_as_requested(
    w: int, h: int, mode: str, resize: dict, fmt: str, quality: int, seed: int
) -> None:
    bw, bh = resize["width"], resize["height"]
    fit, up = resize["fit"], resize["upscale"]
    try:
        r = process(_source(w, h, mode, seed), {"resize": resize, "format": fmt, "quality": quality})
    except InvalidRecipe as err:
        # only a one-sided box with upscale can outgrow a format (WebP: 16383 px per side)
        assert err.details[0]["field"] == "format"
        assert up and fit in ("inside", "contain") and (bw is None or bh is None)
        longest = w * bh / h if bw is None else h * bw / w
        assert longest > MAX_SIDE[fmt] - 1
        return
    out = Image.open(io.BytesIO(r.data))
    out.load()
    assert out.format == PIL_NAME[fmt]
    ow, oh = out.size
    assert (ow, oh) == (r.facts["output"]["width"], r.facts["output"]["height"])
    # fits the box (for the non-upscaling case also never bigger than the source, except contain's canvas)
    if bw is not None:
        assert ow <= bw
    if bh is not None:
        assert oh <= bh
    if fit in ("inside", "contain") and not (fit == "contain" and bw and bh):
        # aspect ratio kept within one pixel of rounding
        assert abs(ow * h - oh * w) <= max(w, h)
        assert abs(ow - oh * w / h) <= 1 or abs(oh - ow * h / w) <= 1
        if not up:
            assert ow <= w and oh <= h
    if fit == "contain" and bw and bh:
        assert (ow, oh) == (bw, bh)  # letterboxed to exactly the box
    if fit == "cover":
        scale = max(bw / w, bh / h) if up else min(1.0, max(bw / w, bh / h))
        assert (ow, oh) == (min(bw, max(1, round(w * scale))), min(bh, max(1, round(h * scale))))
    if fit == "fill":
        assert (ow, oh) == ((bw, bh) if up else (min(bw, w), min(bh, h)))
    assert 0 < r.facts["output"]["bytes"] == len(r.data)
    m = r.facts["metrics"]
    assert -1.0 <= m["ssim"] <= 1.0 and 0 < m["psnr"] <= 100.0


@SETTINGS
@given(w=st.integers(8, 200), h=st.integers(8, 200), orientation=st.integers(1, 8),
       width=st.integers(1, 120))
def test_orientation_then_resize_gives_oriented_box(w: int, h: int, orientation: int, width: int) -> None:
    src = g.with_exif_orientation(g.photo_like(w, h), orientation)
    r = process(src, {"resize": {"width": width}, "format": "png"})
    ow, oh = Image.open(io.BytesIO(r.data)).size
    vw, vh = (h, w) if orientation >= 5 else (w, h)  # what a viewer sees
    assert ow == min(width, vw)
    assert abs(oh - vh * ow / vw) <= 1


@SETTINGS
@given(recipe=st.fixed_dictionaries({}, optional={
    "format": st.sampled_from(["jpeg", "png", "webp", "original"]),
    "metadata": st.sampled_from(["strip", "keep", "keep_copyright_icc"]),
    "color": st.sampled_from(["srgb", "keep"]),
    "background": st.sampled_from(["#fff", "#000000", "#12ab9f"]),
    "ops": st.fixed_dictionaries({}, optional={"grayscale": st.booleans(),
                                               "sharpen": st.floats(0, 3), "blur": st.floats(0, 3)}),
    "watermark": st.one_of(st.none(), st.fixed_dictionaries(
        {"text": st.text(alphabet="abcXYZ©0123 ", min_size=1, max_size=12)},
        optional={"position": st.sampled_from(["top-left", "center", "bottom-right", "tiled"]),
                  "opacity": st.floats(0, 1), "scale": st.floats(0.05, 1.0), "margin": st.floats(0, 0.5)})),
}), mode=modes)
def test_random_valid_recipes_never_crash(recipe: dict, mode: str) -> None:
    r = process(_source(37, 23, mode, 0), recipe)
    out = Image.open(io.BytesIO(r.data))
    out.load()
    assert out.size == (37, 23)
    assert r.facts["recipe_hash"] and r.facts["output"]["bytes"] == len(r.data)
