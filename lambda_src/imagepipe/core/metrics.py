"""Full-reference quality metrics: SSIM and PSNR, numpy-vectorised.

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
  JSON-safe stand-in for infinity).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops

from imagepipe.core.encode import flatten
from imagepipe.core.transform import i16_to_l

PSNR_CAP = 100.0
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


def ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two equally sized 2-D luma arrays (0–255): 8×8 windows, stride 4."""
    h, w = a.shape
    if h < _WINDOW or w < _WINDOW:
        return _ssim_sliding(a, b)
    h4, w4 = h // 4 * 4, w // 4 * 4
    # 4×4 block sums of x, y, x², y², xy, computed in horizontal stripes that stay in cache
    blocks: list[list[np.ndarray]] = [[], [], [], [], []]
    for y0 in range(0, h4, _STRIPE):
        x = a[y0:min(h4, y0 + _STRIPE), :w4].astype(np.int32)
        y = b[y0:min(h4, y0 + _STRIPE), :w4].astype(np.int32)
        for i, v in enumerate((x, y, x * x, y * y, x * y)):
            r = v[0::4] + v[1::4] + v[2::4] + v[3::4]  # rows first: contiguous reads
            blocks[i].append(r[:, 0::4] + r[:, 1::4] + r[:, 2::4] + r[:, 3::4])

    def windows(parts: list[np.ndarray]) -> np.ndarray:
        s = np.concatenate(parts) if len(parts) > 1 else parts[0]  # exact int32 block sums
        return (s[:-1, :-1] + s[1:, :-1] + s[:-1, 1:] + s[1:, 1:]).astype(np.float64) / 64.0

    mu_a, mu_b = windows(blocks[0]), windows(blocks[1])
    aa = windows(blocks[2]) - mu_a * mu_a
    bb = windows(blocks[3]) - mu_b * mu_b
    ab = windows(blocks[4]) - mu_a * mu_b
    return _ssim_formula(mu_a, mu_b, aa, bb, ab)


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


def compare(reference: Image.Image, output: Image.Image,
            background: tuple[int, int, int] = (255, 255, 255)) -> dict[str, float]:
    """``{"ssim", "psnr"}`` of ``output`` against ``reference`` (one flatten/convert for both)."""
    a, b = _pair(reference, output, background)
    sse, n = _sse(a, b)
    if sse == 0.0:
        return {"ssim": 1.0, "psnr": PSNR_CAP}
    s = ssim_luma(np.asarray(_luma(a)), np.asarray(_luma(b)))
    return {"ssim": round(s, 6), "psnr": round(_psnr_from(sse, n), 4)}
