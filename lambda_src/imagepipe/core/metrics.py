"""Full-reference quality metrics: SSIM, PSNR and SSIMULACRA2, numpy-vectorised.

Definitions (see docs/engine.md):

- both images are first made comparable: alpha is flattened onto the recipe's background
  (so a transparent area counts as what a viewer sees on that background), 16-bit is reduced to
  8-bit, palettes are expanded;
- **SSIM** (Wang et al. 2004) on luma (BT.601: Y = 0.299 R + 0.587 G + 0.114 B, which is exactly
  Pillow's ``convert("L")``), K1 = 0.01, K2 = 0.03, L = 255, with 8×8 *uniform* windows placed
  every 4 pixels (overlapping by half) — the layout of FFmpeg's ``ssim`` filter. Window sums are
  exact integers: 4×4 block sums by reshaping, then each 8×8 window is 2×2 neighbouring blocks,
  so the cost is a few passes over the pixels. The last ``h % 4`` rows / ``w % 4`` columns are
  not covered. Images below 8 px on a side use one stride-1 sliding window of their size
  (integral images). Images above ``MAX_METRIC_PIXELS`` are box-downsampled by the smallest
  integer factor that brings them under it (as the reference ``ssim.m`` does for large images);
- **PSNR** over all colour channels (RGB, or L for grayscale outputs) at full output resolution:
  10·log10(255² / MSE), capped at ``PSNR_CAP`` = 100 dB; identical images report 100.0 (a
  JSON-safe stand-in for infinity);
- **SSIMULACRA2** (``core/ssimulacra2.py``, libjxl's published metric) on RGB at the output size
  (above 2048² px both images are first box-reduced in linear light), rounded to 4 decimals;
  identical images report 100.0. Only computed when asked for (``names``): it costs ~20–40× SSIM.

:class:`Reference` keeps the reference side of every metric (flattened image, luma window
statistics, SSIMULACRA2 pyramid) so that a sweep or an auto-quality search measures many outputs
of one image without recomputing it; :func:`compare` is :func:`compare_to` with a fresh one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageChops

from imagepipe.core.encode import flatten
from imagepipe.core.transform import i16_to_l

PSNR_CAP = 100.0
#: every metric the engine computes; sweeps and ``target.metric`` pick from these
METRIC_NAMES: tuple[str, ...] = ("ssim", "psnr", "ssimulacra2")
DEFAULT_METRICS: tuple[str, ...] = ("ssim", "psnr")
#: ``process()`` skips metrics (facts say why) for outputs above this many pixels (memory)
MAX_METRIC_OUTPUT_PIXELS = 24_000_000
MAX_METRIC_PIXELS = 4_000_000
_WINDOW = 8
_STRIPE = 128  # rows per stripe (multiple of 4)
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_SQUARES = np.arange(256, dtype=np.float64) ** 2


def comparable(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``im`` as 8-bit RGB or L with alpha flattened onto ``background``."""
    if im.mode in ("I;16", "I", "I;16B", "I;16L"):
        im = i16_to_l(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("1",):
        im = im.convert("L")
    elif im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        im = flatten(im if im.mode != "PA" else im.convert("RGBA"), background)
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    return im


def _pair(a: Image.Image, b: Image.Image,
          background: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    a, b = comparable(a, background), comparable(b, background)
    if a.mode != b.mode:
        a, b = a.convert("RGB"), b.convert("RGB")
    if a.size != b.size:
        raise ValueError(f"metric images differ in size: {a.size} vs {b.size}")
    return a, b


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of every k×k window (valid positions) via an integral image."""
    c = np.zeros((x.shape[0] + 1, x.shape[1] + 1), dtype=np.float64)
    np.cumsum(x, axis=0, dtype=np.float64, out=c[1:, 1:])
    np.cumsum(c[1:, 1:], axis=1, out=c[1:, 1:])
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return s / (k * k)


def _ssim_formula(mu_a: np.ndarray, mu_b: np.ndarray, aa: np.ndarray, bb: np.ndarray,
                  ab: np.ndarray) -> float:
    num = (2 * mu_a * mu_b + _C1) * (2 * ab + _C2)
    den = (mu_a * mu_a + mu_b * mu_b + _C1) * (aa + bb + _C2)
    return float(np.mean(num / den))


def _stripe_sums(v: np.ndarray) -> np.ndarray:
    """Exact int32 4×4 block sums of one stripe (rows and columns multiples of 4)."""
    r = v[0::4] + v[1::4] + v[2::4] + v[3::4]  # rows first: contiguous reads
    return r[:, 0::4] + r[:, 1::4] + r[:, 2::4] + r[:, 3::4]


def _windows(s: np.ndarray) -> np.ndarray:
    """Mean of every 8×8 window (2×2 neighbouring 4×4 blocks) from exact block sums."""
    return (s[:-1, :-1] + s[1:, :-1] + s[:-1, 1:] + s[1:, 1:]).astype(np.float64) / 64.0


def _luma_sums(a: np.ndarray, b: np.ndarray | None, h4: int, w4: int) -> list[np.ndarray]:
    """Block sums of ``a``, ``a²`` (``b`` None) or of ``b``, ``b²``, ``a·b``: the uint8 planes are
    widened to int32 one cache-sized stripe at a time, so no full-size temporary is ever made
    (a fresh multi-megabyte array costs more in page faults than the arithmetic on it)."""
    parts: list[list[np.ndarray]] = [[], []] if b is None else [[], [], []]
    for y0 in range(0, h4, _STRIPE):
        y1 = min(h4, y0 + _STRIPE)
        x = a[y0:y1, :w4].astype(np.int32)
        if b is None:
            parts[0].append(_stripe_sums(x))
            parts[1].append(_stripe_sums(x * x))
            continue
        y = b[y0:y1, :w4].astype(np.int32)
        parts[0].append(_stripe_sums(y))
        parts[1].append(_stripe_sums(y * y))
        parts[2].append(_stripe_sums(x * y))
    return [np.concatenate(p) if len(p) > 1 else p[0] for p in parts]


class LumaReference:
    """The reference side of :func:`ssim_luma` (its luma, window means and variances), computed
    once and reused against any number of outputs — bit-identical to computing it each time."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        h, w = a.shape
        self.small = h < _WINDOW or w < _WINDOW
        if self.small:
            return
        self.h4, self.w4 = h // 4 * 4, w // 4 * 4
        bx, bxx = _luma_sums(a, None, self.h4, self.w4)
        self.mu_a = _windows(bx)
        self.aa = _windows(bxx) - self.mu_a * self.mu_a

    def ssim(self, b: np.ndarray) -> float:
        """SSIM of luma ``b`` (same size) against this reference."""
        if b.shape != self.a.shape:
            raise ValueError(f"metric images differ in size: {self.a.shape} vs {b.shape}")
        if self.small:
            return _ssim_sliding(self.a, b)
        by, byy, bxy = _luma_sums(self.a, b, self.h4, self.w4)
        mu_b = _windows(by)
        bb = _windows(byy) - mu_b * mu_b
        ab = _windows(bxy) - self.mu_a * mu_b
        return _ssim_formula(self.mu_a, mu_b, self.aa, bb, ab)


def ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two equally sized 2-D luma arrays (0–255): 8×8 windows, stride 4."""
    return LumaReference(a).ssim(b)


def _ssim_sliding(a: np.ndarray, b: np.ndarray) -> float:
    """Stride-1 sliding-window SSIM with a window of min(8, h, w) (tiny images)."""
    k = min(_WINDOW, a.shape[0], a.shape[1])
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    mu_a, mu_b = _box_mean(a, k), _box_mean(b, k)
    aa = _box_mean(a * a, k) - mu_a * mu_a
    bb = _box_mean(b * b, k) - mu_b * mu_b
    ab = _box_mean(a * b, k) - mu_a * mu_b
    return _ssim_formula(mu_a, mu_b, aa, bb, ab)


def _luma(im: Image.Image) -> Image.Image:
    y = im if im.mode == "L" else im.convert("L")
    n = y.width * y.height
    if n > MAX_METRIC_PIXELS:
        f = math.ceil(math.sqrt(n / MAX_METRIC_PIXELS))
        y = y.reduce(f)
    return y


def _sse(a: Image.Image, b: Image.Image) -> tuple[float, int]:
    """Sum of squared differences over all channels, via Pillow's C difference + histogram."""
    hist = np.asarray(ImageChops.difference(a, b).histogram(), dtype=np.float64).reshape(-1, 256)
    sse = float((hist * _SQUARES).sum())
    return sse, a.width * a.height * hist.shape[0]


def _psnr_from(sse: float, n: int) -> float:
    if sse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0 * 255.0 * n / sse))


def ssim(a: Image.Image, b: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """SSIM (8×8 windows every 4 px, luma) of two equally sized images; 1.0 = identical."""
    return compare(a, b, background)["ssim"]


def psnr(a: Image.Image, b: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """PSNR in dB over all channels, capped at ``PSNR_CAP`` (identical images give the cap)."""
    a, b = _pair(a, b, background)
    return round(_psnr_from(*_sse(a, b)), 4)


class Reference:
    """A metrics reference (the prepared image), computed once per image and reused for every
    output measured against it: the flattened image, its luma window statistics (SSIM) and its
    SSIMULACRA2 pyramid, each built on first use (per colour mode: a grayscale reference meets
    RGB outputs as RGB, like :func:`compare`)."""

    def __init__(self, image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.background = background
        self.base = comparable(image, background)
        self._sides: dict[str, dict[str, Any]] = {}

    def side(self, mode: str) -> dict[str, Any]:
        """The cached reference data for outputs compared in ``mode`` (``RGB`` or ``L``)."""
        got = self._sides.get(mode)
        if got is None:
            got = {"image": self.base if self.base.mode == mode else self.base.convert(mode)}
            self._sides[mode] = got
        return got


def _check_names(names: Sequence[str]) -> None:
    bad = [n for n in names if n not in METRIC_NAMES]
    if bad:
        raise ValueError(f"unknown metrics {bad}; known: {list(METRIC_NAMES)}")


def compare_to(ref: Reference, output: Image.Image,
               names: Sequence[str] = DEFAULT_METRICS) -> dict[str, float | None]:
    """The metrics ``names`` (``ssim``, ``psnr``, ``ssimulacra2``) of ``output`` against a
    cached :class:`Reference`. SSIMULACRA2 is ``None`` below 8×8 pixels (undefined there)."""
    _check_names(names)
    b = comparable(output, ref.background)
    mode = b.mode if b.mode == ref.base.mode else "RGB"
    if b.mode != mode:
        b = b.convert(mode)
    side = ref.side(mode)
    a = side["image"]
    if a.size != b.size:
        raise ValueError(f"metric images differ in size: {a.size} vs {b.size}")
    sse, n = _sse(a, b)
    out: dict[str, float | None] = {}
    for name in names:
        if name == "psnr":
            out["psnr"] = PSNR_CAP if sse == 0.0 else round(_psnr_from(sse, n), 4)
        elif name == "ssim":
            if sse == 0.0:
                out["ssim"] = 1.0
                continue
            if "luma" not in side:
                side["luma"] = LumaReference(np.asarray(_luma(a)))
            out["ssim"] = round(side["luma"].ssim(np.asarray(_luma(b))), 6)
        else:
            if min(a.size) < 8:
                out["ssimulacra2"] = None
                continue
            if sse == 0.0:
                out["ssimulacra2"] = 100.0
                continue
            if "ssimulacra2" not in side:
                from imagepipe.core import ssimulacra2  # only when asked for

                side["ssimulacra2"] = ssimulacra2.Reference(np.asarray(a))
            out["ssimulacra2"] = round(side["ssimulacra2"].score(np.asarray(b)), 4)
    return out


def compare(reference: Image.Image, output: Image.Image,
            background: tuple[int, int, int] = (255, 255, 255),
            names: Sequence[str] = DEFAULT_METRICS) -> dict[str, float | None]:
    """``{"ssim", "psnr"}`` (or the metrics ``names``) of ``output`` against ``reference``,
    without a cache (a fresh :class:`Reference`)."""
    return compare_to(Reference(reference, background), output, names)
