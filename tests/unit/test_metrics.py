"""Metric sanity: identity, monotonicity under heavier compression, known values, edge sizes."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from imagepipe.core import metrics as M
from tests.unit import imagegen as g


def jpeg_roundtrip(im: Image.Image, q: int) -> Image.Image:
    out = Image.open(io.BytesIO(g.encode(im, "jpeg", quality=q)))
    out.load()
    return out


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "I;16"])
def test_identical_images_give_ssim_1_and_capped_psnr(mode: str) -> None:
    im = g.photo_like(80, 60, mode)
    assert M.ssim(im, im.copy()) == 1.0
    assert M.psnr(im, im.copy()) == M.PSNR_CAP == 100.0
    assert M.compare(im, im.copy()) == {"ssim": 1.0, "psnr": 100.0}


def test_heavier_compression_gives_lower_scores() -> None:
    im = g.photo_like(256, 192)
    scores = [M.compare(im, jpeg_roundtrip(im, q)) for q in (95, 75, 40, 10, 2)]
    ssims = [s["ssim"] for s in scores]
    psnrs = [s["psnr"] for s in scores]
    assert ssims == sorted(ssims, reverse=True) and len(set(ssims)) == len(ssims)
    assert psnrs == sorted(psnrs, reverse=True)
    assert ssims[0] > 0.97 and ssims[-1] < 0.85


def test_psnr_known_value() -> None:
    a = Image.new("RGB", (64, 64), (100, 100, 100))
    b = Image.new("RGB", (64, 64), (110, 100, 100))  # MSE = 100 / 3 over all channels
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 3)), abs=1e-3)


def test_ssim_known_properties() -> None:
    rng = np.random.default_rng(1)
    a = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    inv = Image.fromarray(255 - np.asarray(a))
    assert M.ssim(a, inv) < 0  # anti-correlated structure
    shifted = Image.fromarray(np.clip(np.asarray(a, dtype=int) + 40, 0, 255).astype(np.uint8))
    s = M.ssim(a, shifted)
    assert 0.5 < s < 1.0  # luminance change only: structure kept
    assert M.ssim(a, shifted) == pytest.approx(M.ssim(shifted, a), abs=1e-9)  # symmetric


def test_strided_ssim_tracks_the_sliding_window_reference() -> None:
    im = g.photo_like(200, 150)
    for q in (90, 50, 10):
        out = jpeg_roundtrip(im, q)
        ya, yb = np.asarray(im.convert("L")), np.asarray(out.convert("L"))
        assert M.ssim_luma(ya, yb) == pytest.approx(M._ssim_sliding(ya, yb), abs=0.02)


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (8, 8), (9, 5), (13, 17)])
def test_tiny_images(size: tuple[int, int]) -> None:
    a = g.photo_like(*size)
    b = Image.new("RGB", size, (0, 0, 0))
    s = M.ssim(a, b)
    assert -1.0 <= s < 1.0 and math.isfinite(s)
    assert M.ssim(a, a.copy()) == 1.0


def test_large_images_are_downsampled(monkeypatch: pytest.MonkeyPatch) -> None:
    im = g.photo_like(400, 300)
    out = jpeg_roundtrip(im, 30)
    full = M.ssim(im, out)
    monkeypatch.setattr(M, "MAX_METRIC_PIXELS", 20_000)
    small = M.ssim(im, out)
    assert small != full and abs(small - full) < 0.1


def test_alpha_is_compared_as_seen_on_the_background() -> None:
    a = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent, red underneath
    b = Image.new("RGBA", (32, 32), (0, 0, 255, 0))  # fully transparent, blue underneath
    assert M.compare(a, b) == {"ssim": 1.0, "psnr": 100.0}
    c = Image.new("RGB", (32, 32), (255, 255, 255))  # what a transparent image looks like on white
    assert M.compare(a, c)["psnr"] == 100.0


def test_size_mismatch_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        M.compare(Image.new("RGB", (4, 4)), Image.new("RGB", (5, 4)))
