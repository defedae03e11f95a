"""An independent quality check for benchmark outputs: SSIM on luma against one reference.

The reference for an image is the original decoded by Pillow, alpha composited onto white,
resized with LANCZOS (full decode, no draft) to each output's size. SSIM uses 7x7 uniform
windows (as scikit-image's default), computed with integral images in numpy.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_WIN = 7


def flatten_rgb(im: Image.Image) -> Image.Image:
    """RGB view of any image, alpha composited onto white."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _luma(im: Image.Image) -> np.ndarray:
    rgb = np.asarray(im, dtype=np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _box_mean(a: np.ndarray) -> np.ndarray:
    """Mean over every valid 7x7 window (output shape shrinks by WIN-1)."""
    s = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    w = _WIN
    total = s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]
    return total / (w * w)


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of two same-size RGB images, on luma."""
    x, y = _luma(a), _luma(b)
    if min(x.shape) < _WIN:
        return float("nan")
    mx, my = _box_mean(x), _box_mean(y)
    sxx = _box_mean(x * x) - mx * mx
    syy = _box_mean(y * y) - my * my
    sxy = _box_mean(x * y) - mx * my
    n = _WIN * _WIN
    sxx, syy, sxy = sxx * n / (n - 1), syy * n / (n - 1), sxy * n / (n - 1)  # sample covariance
    num = (2 * mx * my + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    return float(np.mean(num / den))


class Reference:
    """The full-resolution original of one image, decoded once, for scoring outputs."""

    def __init__(self, data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            self.image = flatten_rgb(im)
        self._cache: dict[tuple[int, int], Image.Image] = {}

    def at(self, size: tuple[int, int]) -> Image.Image:
        if size not in self._cache:
            self._cache[size] = self.image.resize(size, Image.Resampling.LANCZOS)
        return self._cache[size]

    def score(self, output: bytes) -> tuple[float, tuple[int, int]]:
        """SSIM of encoded ``output`` against the reference at the output's size."""
        with Image.open(io.BytesIO(output)) as im:
            out = flatten_rgb(im)
        return ssim(self.at(out.size), out), out.size
