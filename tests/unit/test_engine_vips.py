"""The libvips decoder (``IMAGEPIPE_ENGINE=vips``, the default) against the Pillow path
(``IMAGEPIPE_ENGINE=pillow``): which inputs it takes, pixel parity (SSIM ≥ 0.995 between the
two engines' outputs), the same typed errors, its safety settings, and the cold-start error
when libvips is configured but missing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from imagepipe.core import prepare, process
from imagepipe.core import vips as vips_mod
from imagepipe.core.metrics import compare
from imagepipe.core.transform import Plan
from imagepipe.errors import CorruptImage, ImagePipeError, InternalError
from tests.unit import imagegen as g

PARITY = 0.995
ROOT = Path(__file__).resolve().parents[2]


def run(data: bytes, recipe: dict, monkeypatch: pytest.MonkeyPatch, engine: str) -> tuple[Image.Image, dict]:
    monkeypatch.setenv("IMAGEPIPE_ENGINE", engine)
    r = process(data, recipe)
    im = Image.open(io.BytesIO(r.data))
    im.load()
    return im, r.facts


def used_vips(facts: dict) -> bool:
    return any(f.startswith("vips_") for f in facts["fast_paths"])


MP = pytest.MonkeyPatch


def both(data: bytes, recipe: dict, monkeypatch: MP) -> tuple[Image.Image, dict, Image.Image, dict]:
    a, fa = run(data, recipe, monkeypatch, "vips")
    b, fb = run(data, recipe, monkeypatch, "pillow")
    assert not used_vips(fb)
    return a, fa, b, fb


def assert_parity(a: Image.Image, fa: dict, b: Image.Image, fb: dict) -> None:
    """Same geometry, modes and input facts; SSIM ≥ 0.995 between the two engines' outputs for a
    lossless output. A lossy encoder turns a tiny input difference into its own noise (JPEG q80 on
    grainy test images: 0.98–0.994 between two encodes of near-identical inputs, docs/engine.md),
    so there the *pre-encode* images must agree to 0.995 and each output's reported SSIM within
    0.01 of the other's."""
    assert a.size == b.size
    assert a.mode == b.mode
    assert fa["input"] == fb["input"]
    assert fa["output"]["mode"] == fb["output"]["mode"]
    if fa["output"]["format"] == "png":
        assert compare(b, a)["ssim"] >= PARITY
        return
    assert compare(b, a)["ssim"] >= 0.96
    assert abs(fa["metrics"]["ssim"] - fb["metrics"]["ssim"]) <= 0.01


def prepared_parity(data: bytes, recipe: dict, monkeypatch: pytest.MonkeyPatch) -> float:
    images = []
    for engine in ("vips", "pillow"):
        monkeypatch.setenv("IMAGEPIPE_ENGINE", engine)
        images.append(prepare(data, recipe).image)
    assert images[0].size == images[1].size and images[0].mode == images[1].mode
    return compare(images[1], images[0])["ssim"]


# --- parity: modes, formats, fits, orientations, ICC, 16-bit ------------------------------------


@pytest.mark.parametrize(("fmt", "mode"),
                         [("png", m) for m in ("RGB", "RGBA", "L", "LA", "P", "Pt", "1", "I;16")]
                         + [("jpeg", "RGB"), ("jpeg", "L"), ("webp", "RGB"), ("webp", "RGBA"),
                            ("tiff", "RGB"), ("tiff", "RGBA"),
                            ("tiff", "L")])
@pytest.mark.parametrize("out", ["png", "jpeg", "webp"])
def test_modes_and_formats_match_pillow(fmt: str, mode: str, out: str, monkeypatch: MP) -> None:
    kw = {"lossless": True} if fmt == "webp" else {"quality": 95} if fmt in ("jpeg", "avif") else {}
    data = g.photo_bytes(480, 320, fmt, mode=mode, **kw)
    recipe = {"resize": {"width": 120, "height": 120}, "format": out}
    a, fa, b, fb = both(data, recipe, monkeypatch)
    assert used_vips(fa) == (mode != "I;16" or out != "png")  # 16-bit kept for PNG: Pillow
    assert a.size == (120, 80)
    assert_parity(a, fa, b, fb)
    assert prepared_parity(data, recipe, monkeypatch) >= PARITY


@pytest.mark.parametrize("fit", ["inside", "contain", "cover", "fill"])
@pytest.mark.parametrize("upscale", [False, True])
@pytest.mark.parametrize("src", ["jpeg", "png_rgba", "webp"])
def test_every_fit_matches_pillow(fit: str, upscale: bool, src: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"jpeg": lambda: g.photo_bytes(900, 600, "jpeg", quality=95),
            "png_rgba": lambda: g.encode(g.rgba_logo(900, 600), "png"),
            "webp": lambda: g.photo_bytes(900, 600, "webp", quality=95)}[src]()
    recipe = {"resize": {"width": 200, "height": 160, "fit": fit, "upscale": upscale}, "format": "png"}
    a, fa, b, fb = both(data, recipe, monkeypatch)
    assert used_vips(fa)
    assert_parity(a, fa, b, fb)


@pytest.mark.parametrize("filt", ["nearest", "bilinear", "bicubic", "box", "hamming"])
def test_other_filters_resize_in_pillow_after_a_vips_decode(filt: str, monkeypatch: MP) -> None:
    data = g.photo_bytes(800, 600, "jpeg", quality=95)
    a, fa, b, fb = both(data, {"resize": {"width": 100, "filter": filt}, "format": "png"}, monkeypatch)
    assert any(f.startswith("vips_shrink_on_load") for f in fa["fast_paths"])
    assert_parity(a, fa, b, fb)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_orientations_match_pillow(orientation: int, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    im = g.photo_like(600, 300)
    kw = {"quality": 95} if fmt != "png" else {}
    data = g.encode(im, fmt, exif=g.exif_bytes(orientation=orientation), **kw)
    a, fa, b, fb = both(data, {"resize": {"width": 150, "height": 150}, "format": "png"}, monkeypatch)
    assert used_vips(fa)
    assert a.size == ((75, 150) if orientation >= 5 else (150, 75))
    assert_parity(a, fa, b, fb)


def test_png_exif_after_the_image_data_is_seen_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = g.png_with_late_exif(g.photo_like(400, 200), 6)
    a, fa, b, fb = both(data, {"resize": {"width": 100, "height": 100}, "format": "png"}, monkeypatch)
    assert used_vips(fa) and a.size == (50, 100)
    assert_parity(a, fa, b, fb)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_icc_to_srgb_matches_pillow(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"quality": 95} if fmt != "png" else {}
    data = g.with_icc(g.photo_like(500, 300), fmt, g.adobe_like_icc(), **kw)
    for recipe in ({"resize": {"width": 100}, "format": "png"},
                   {"resize": {"width": 100}, "format": "jpeg", "metadata": "keep", "color": "keep"}):
        a, fa, b, fb = both(data, recipe, monkeypatch)
        assert used_vips(fa)
        assert_parity(a, fa, b, fb)
        assert prepared_parity(data, recipe, monkeypatch) >= PARITY
        assert a.info.get("icc_profile") == b.info.get("icc_profile")


def test_no_resize_decodes_in_vips_and_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    data = g.photo_bytes(300, 200, "png", mode="RGBA")
    a, fa, b, fb = both(data, {"format": "png"}, monkeypatch)
    assert fa["fast_paths"] == ["vips_decode:300x200"]
    assert a.tobytes() == b.tobytes()  # lossless in, lossless out, no resampling: identical


def test_ops_letterbox_watermark_run_after_a_vips_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    data = g.photo_bytes(800, 500, "jpeg", quality=95)
    recipe = {"resize": {"width": 200, "height": 200, "fit": "contain"}, "format": "png",
              "ops": {"sharpen": 1.0, "grayscale": True}, "watermark": {"text": "W", "opacity": 1.0}}
    a, fa, b, fb = both(data, recipe, monkeypatch)
    assert used_vips(fa) and a.size == (200, 200)
    assert_parity(a, fa, b, fb)


# --- what stays on Pillow -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "recipe"),
    [
        ("gif", {"resize": {"width": 60}}),
        ("cmyk", {"resize": {"width": 60}}),
        ("png16", {"resize": {"width": 60}, "format": "png"}),  # 16-bit kept for PNG output
        ("anim_webp", {"animation": {"keep": True}, "format": "webp"}),
        ("avif", {"resize": {"width": 60}}),
        ("avif_rotated", {"resize": {"width": 60}}),
    ],
)
def test_pillow_keeps_what_it_does_better(kind: str, recipe: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"gif": lambda: g.photo_bytes(200, 100, "gif"),
            "cmyk": lambda: g.photo_bytes(200, 100, "jpeg", mode="CMYK"),
            "png16": lambda: g.photo_bytes(200, 100, "png", mode="I;16"),
            "anim_webp": lambda: g.animated_webp(3, 64, 48),
            "avif": lambda: g.photo_bytes(200, 100, "avif"),
            "avif_rotated": lambda: g.encode(g.photo_like(200, 100), "avif",
                                             exif=g.exif_bytes(orientation=6))}[kind]()
    a, fa, b, fb = both(data, recipe, monkeypatch)
    assert not used_vips(fa)
    assert a.tobytes() == b.tobytes()


def test_engine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEPIPE_ENGINE", raising=False)
    assert vips_mod.engine() == "vips"
    monkeypatch.setenv("IMAGEPIPE_ENGINE", " Pillow ")
    assert vips_mod.engine() == "pillow"
    monkeypatch.setenv("IMAGEPIPE_ENGINE", "magick")
    with pytest.raises(InternalError, match="IMAGEPIPE_ENGINE"):
        process(g.photo_bytes(40, 30, "png"), {})
    monkeypatch.setenv("IMAGEPIPE_VIPS_CONCURRENCY", "0")
    with pytest.raises(InternalError, match="IMAGEPIPE_VIPS_CONCURRENCY"):
        vips_mod.concurrency()


# --- safety -------------------------------------------------------------------------------------


def test_only_the_explicit_loaders_are_open() -> None:
    pv = vips_mod.require()
    svg = g.svg_bytes()
    gif = g.photo_bytes(8, 8, "gif")
    for call in (lambda: pv.Image.svgload_buffer(svg), lambda: pv.Image.new_from_buffer(svg, ""),
                 lambda: pv.Image.thumbnail_buffer(svg, 10), lambda: pv.Image.gifload_buffer(gif)):
        with pytest.raises(pv.Error):
            call()
    im = pv.Image.pngload_buffer(g.photo_bytes(8, 8, "png"))
    assert (im.width, im.height) == (8, 8)
    assert pv.cache_get_max() == 0


def test_svg_bytes_given_to_a_loader_are_corrupt_not_rendered() -> None:
    with pytest.raises(CorruptImage):
        vips_mod.decode(g.svg_bytes(), "png", "RGB", (10, 10), Plan(content=(10, 10)), 1, "lanczos")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_inputs_fail_the_same_on_both_engines(fmt: str, keep: float, monkeypatch: MP) -> None:
    data = g.truncated(g.photo_bytes(400, 300, fmt), keep)
    codes = []
    for engine in ("vips", "pillow"):
        monkeypatch.setenv("IMAGEPIPE_ENGINE", engine)
        with pytest.raises(ImagePipeError) as exc:
            process(data, {"resize": {"width": 100}})
        codes.append(exc.value.code)
    assert codes == ["corrupt_image", "corrupt_image"]


def test_header_disagreement_is_corrupt() -> None:
    data = g.photo_bytes(64, 48, "png")
    with pytest.raises(CorruptImage, match="inconsistent"):
        vips_mod.decode(data, "png", "RGB", (640, 480), Plan(content=(64, 48)), 1, "lanczos")


def _clean_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=120)


_NO_PYVIPS = ("import sys; sys.modules['pyvips'] = None; sys.path[:0] = ['lambda_src', '.']; ")


def test_missing_libvips_is_a_cold_start_error() -> None:
    r = _clean_python(_NO_PYVIPS + "import imagepipe.core", {"IMAGEPIPE_ENGINE": "vips"})
    assert r.returncode != 0
    assert "InternalError" in r.stderr and "pyvips" in r.stderr
    r = _clean_python(_NO_PYVIPS + "import imagepipe.core as c; from tests.unit import imagegen as g; "
                      "print(c.process(g.photo_bytes(40, 30, 'png'), {}).facts['fast_paths'])",
                      {"IMAGEPIPE_ENGINE": "pillow"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
