"""The optional libvips front end (``IMAGEPIPE_VIPS=on``): used only where eligible, same results
as the Pillow path, same errors. Skipped when pyvips is not installed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imagepipe.core import process
from imagepipe.core import vips as vips_front
from imagepipe.core.metrics import compare
from imagepipe.errors import CorruptImage, TooManyPixels
from tests.unit import imagegen as g

pytestmark = pytest.mark.skipif(vips_front._pyvips() is None, reason="pyvips not installed")

RESIZE = {"resize": {"width": 120, "height": 120}}


def run(data: bytes, recipe: dict, monkeypatch: pytest.MonkeyPatch, on: bool) -> tuple[Image.Image, dict]:
    monkeypatch.setenv("IMAGEPIPE_VIPS", "on" if on else "off")
    r = process(data, recipe)
    im = Image.open(io.BytesIO(r.data))
    im.load()
    return im, r.facts


def used_vips(facts: dict) -> bool:
    return any(f.startswith("vips_thumbnail") for f in facts["fast_paths"])


@pytest.mark.parametrize(("fmt", "mode"), [("png", m) for m in ("RGB", "RGBA", "L", "LA", "P", "Pt", "1")]
                         + [("webp", "RGB"), ("webp", "RGBA")])  # WebP stores RGB(A) only
def test_vips_path_matches_pillow_path(fmt: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = g.photo_bytes(480, 320, fmt, mode=mode, **({"lossless": True} if fmt == "webp" else {}))
    recipe = {**RESIZE, "format": "png"}
    a, fa = run(data, recipe, monkeypatch, on=True)
    b, fb = run(data, recipe, monkeypatch, on=False)
    assert used_vips(fa) and not used_vips(fb)
    assert a.size == b.size == (120, 80)
    assert a.mode == b.mode or {a.mode, b.mode} <= {"L", "LA"}
    assert compare(b, a)["ssim"] > 0.97
    assert fa["input"] == fb["input"]


def test_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEPIPE_VIPS", raising=False)
    r = process(g.photo_bytes(480, 320, "png"), RESIZE)
    assert not used_vips(r.facts)


@pytest.mark.parametrize(
    ("data_kind", "recipe"),
    [
        ("jpeg", RESIZE),
        ("png", {"resize": {"width": 120, "height": 120, "fit": "cover"}}),
        ("png", {"resize": {"width": 120, "filter": "bicubic"}}),
        ("png", {"resize": {"width": 1000}}),  # not smaller: nothing to shrink
        ("png", {}),
        ("gif", RESIZE),
        ("png16", RESIZE),
    ],
)
def test_ineligible_jobs_stay_on_pillow(data_kind: str, recipe: dict,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"jpeg": lambda: g.photo_bytes(480, 320, "jpeg"), "png": lambda: g.photo_bytes(480, 320, "png"),
            "gif": lambda: g.photo_bytes(480, 320, "gif"),
            "png16": lambda: g.photo_bytes(480, 320, "png", mode="I;16")}[data_kind]()
    _, facts = run(data, recipe, monkeypatch, on=True)
    assert not used_vips(facts)


def test_vips_path_applies_orientation_icc_ops_and_watermark(monkeypatch: pytest.MonkeyPatch) -> None:
    im = g.photo_like(480, 320)
    data = g.encode(im, "png", exif=g.exif_bytes(orientation=6, make="Canon"), icc_profile=g.adobe_like_icc())
    recipe = {**RESIZE, "format": "png", "metadata": "keep", "ops": {"sharpen": 1.0},
              "watermark": {"text": "W", "opacity": 1.0}}
    a, fa = run(data, recipe, monkeypatch, on=True)
    b, fb = run(data, recipe, monkeypatch, on=False)
    assert used_vips(fa)
    assert a.size == b.size == (80, 120)  # rotated
    assert fa["input"]["exif"] == fb["input"]["exif"] == {"camera": "Canon", "gps_present": False,
                                                          "orientation": 6}
    assert compare(b, a)["ssim"] > 0.95
    assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).mean() < 4  # colour converted too
    assert a.getexif().get(0x010F) == "Canon" and 0x0112 not in a.getexif()


def test_safety_checks_run_before_libvips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_VIPS", "on")
    with pytest.raises(TooManyPixels):
        process(g.png_header_only(20000, 10000), RESIZE)
    with pytest.raises(CorruptImage):
        process(g.truncated(g.photo_bytes(480, 320, "png"), 0.7), RESIZE)


def test_libvips_decode_failure_is_corrupt_image() -> None:
    from imagepipe.core.transform import Plan

    with pytest.raises(CorruptImage, match="libvips"):
        vips_front.thumbnail(g.truncated(g.photo_bytes(480, 320, "webp"), 0.6), Plan(content=(60, 40)), 1)


def test_asking_for_vips_without_pyvips_is_an_error_not_a_fallback(monkeypatch):
    from imagepipe.errors import InternalError

    monkeypatch.setenv("IMAGEPIPE_VIPS", "on")
    monkeypatch.setattr(vips_front, "_pyvips", lambda: None)
    with pytest.raises(InternalError, match="pyvips"):
        vips_front.enabled()
    monkeypatch.setenv("IMAGEPIPE_VIPS", "off")
    assert vips_front.enabled() is False
