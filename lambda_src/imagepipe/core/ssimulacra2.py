"""SSIMULACRA2 (Jon Sneyers, Cloudinary 2022/2023), a numpy port of libjxl ``tools/ssimulacra2.cc``.

Higher is better: 100 = identical, ~90 visually lossless, ~70 high quality, ~50 medium, and it
can go below 0 for heavy distortion. The algorithm, as published:

1. 8-bit sRGB → linear sRGB (the exact sRGB transfer curve);
2. linear RGB → XYB (the JPEG XL opsin absorbance matrix, bias and cube root), rescaled into
   roughly 0..1 ("MakePositiveXYB": X·14 + 0.42, Y + 0.01, B − Y + 0.55);
3. 6 scales (1:1 … 1:32): each next scale is a 2×2 box average **in linear RGB** (edge pixels
   repeated for odd sizes), converted to XYB again; a scale is computed while the previous one
   is at least 8×8 px (libjxl's rule);
4. per scale and XYB plane, a Gaussian blur σ = 1.5 gives μ and σ² / σ₁₂, from which
   - an SSIM map without the luminance denominator, ``d = max(0, 1 − (1 − (μ1−μ2)²)·(2σ12 + C2)
     / (σ1² + σ2² + C2))``, C2 = 0.0009,
   - edge-difference maps ``(1 + |img2 − μ2|) / (1 + |img1 − μ1|) − 1``: its positive part
     (artifacts: ringing, blocking, banding) and negative part (detail lost: blur, smearing);
5. each of the 3 maps × 3 planes × 6 scales is pooled with the 1-norm (mean) and the 4-norm
   (mean of 4th powers, 4th root): 108 numbers, weighted by the 108 published weights;
6. the weighted sum ``s`` becomes the score: ``s·0.9562…``, then ``2.3268 s − 0.020885 s² +
   6.2485e−5 s³``, then ``100 − 10·s^0.6276`` (100 when s ≤ 0).

**The blur.** libjxl uses its recursive Gaussian (Charalampidis 2016, three truncated-cosine
terms, radius N = round(3.2795 σ + 0.2546) = 5, zero outside the image). That recursion computes
*exactly* a finite convolution with the kernel ``g(d) = Σ_k β_k cos(ω_k d)``, |d| < N (ω_k =
kπ/2N, k = 1, 3, 5; β from the same 3×3 system libjxl solves), so this module derives β the same
way and applies that 9-tap kernel as a separable FIR with zero padding. The result equals
libjxl's up to float32 rounding (libjxl accumulates the recursion in float32; here planes are
float32 and pooled sums float64). The XYB cube root is float32 ``pow(x, 1/3)`` (a few ulp from
``cbrt``; libjxl itself uses a 6-ulp approximation).

**Sizes.** Images above ``MAX_PIXELS`` (2048² ≈ 4.2 MP) are first box-reduced in linear RGB by
the smallest integer factor bringing them under it (a deviation from the published metric, made
to bound memory on a 1 GB Lambda — like the engine's SSIM above 4 MP). Images below 8×8 px have
no score (``ValueError``).

**Reuse.** :class:`Reference` holds the reference side of every scale (XYB planes, μ1 and the
blurred squares) so that many outputs of one image are scored against it without recomputing
it; :func:`score` of a fresh ``Reference`` and of a reused one are bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUM_SCALES = 6
MAX_PIXELS = 2048 * 2048
SIGMA = 1.5
_C2 = np.float32(0.0009)
_STRIPE = 64  # rows per blur stripe
_F32 = np.float32

# --- constants from libjxl ----------------------------------------------------------------------

_M20, _M21 = 0.24342268924547819, 0.20476744424496821
_OPSIN = np.array([[0.30, 1.0 - 0.078 - 0.30, 0.078],
                   [0.23, 1.0 - 0.078 - 0.23, 0.078],
                   [_M20, _M21, 1.0 - _M20 - _M21]])
_BIAS = 0.0037930732552754493
_CBRT_BIAS = _BIAS ** (1.0 / 3.0)
_THIRD = np.float32(1.0 / 3.0)

WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379,
    0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754,
    0.0, 1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653,
    0.0, 1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
    0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063, 0.0,
    0.0, 0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0,
    0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0,
    0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833,
    0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
    95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493,
    171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0, 0.0005130064588990679, 0.0,
    0.00010854057858411537,
])


def _srgb_lut() -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return lin.astype(_F32)


def recursive_gaussian_kernel(sigma: float = SIGMA) -> np.ndarray:
    """The FIR kernel (taps ``-N+1 … N-1``) that libjxl's ``CreateRecursiveGaussian(sigma)``
    recursion computes: ``g(d) = Σ β_k cos(ω_k d)`` (its value at ±N is exactly 0)."""
    radius = float(round(3.2795 * sigma + 0.2546))
    omega = [math.pi / (2.0 * radius) * k for k in (1, 3, 5)]
    p = [1.0 / math.tan(0.5 * omega[0]), -1.0 / math.tan(0.5 * omega[1]), 1.0 / math.tan(0.5 * omega[2])]
    r = [p[0] * p[0] / math.sin(omega[0]), -p[1] * p[1] / math.sin(omega[1]),
         p[2] * p[2] / math.sin(omega[2])]
    rho = [math.exp(-0.5 * sigma * sigma * o * o) / radius for o in omega]
    d13 = p[0] * r[1] - r[0] * p[1]
    d35 = p[1] * r[2] - r[1] * p[2]
    d51 = p[2] * r[0] - r[2] * p[0]
    zeta15, zeta35 = d35 / d13, d51 / d13
    a = np.array([p, r, [zeta15, zeta35, 1.0]])
    gamma = np.array([1.0, radius * radius - sigma * sigma, zeta15 * rho[0] + zeta35 * rho[1] + rho[2]])
    beta = np.linalg.solve(a, gamma)
    n = int(radius)
    d = np.arange(-n + 1, n, dtype=np.float64)
    return sum(b * np.cos(o * d) for b, o in zip(beta, omega, strict=True))


_LUT = _srgb_lut()
_KERNEL = recursive_gaussian_kernel()
_R = len(_KERNEL) // 2
_TAPS = [_F32(_KERNEL[_R + i]) for i in range(_R + 1)]  # centre, ±1, ..., ±R


# --- building blocks ------------------------------------------------------------------------------


def linear_rgb(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB ``(h, w, 3)`` (or gray ``(h, w)``) → planar linear RGB ``(3, h, w)`` float32."""
    if rgb.ndim == 2:
        plane = _LUT[rgb]
        return np.stack([plane, plane, plane])
    return np.ascontiguousarray(_LUT[rgb].transpose(2, 0, 1))


def downsample(lin: np.ndarray, f: int = 2) -> np.ndarray:
    """``f``×``f`` box average of planar ``(3, h, w)``; past the edge the last row/column repeats
    (libjxl's ``Downsample``)."""
    _c, h, w = lin.shape
    ph, pw = -h % f, -w % f
    if ph or pw:
        lin = np.pad(lin, ((0, 0), (0, ph), (0, pw)), mode="edge")
    c, hh, ww = lin.shape
    if f == 2:  # libjxl's summation order: (0,0) + (0,1) + (1,0) + (1,1)
        out = lin[:, 0::2, 0::2] + lin[:, 0::2, 1::2]
        out += lin[:, 1::2, 0::2]
        out += lin[:, 1::2, 1::2]
    else:
        out = lin.reshape(c, hh // f, f, ww // f, f).sum(axis=(2, 4), dtype=_F32)
    out *= _F32(1.0 / (f * f))
    return out


def xyb(lin: np.ndarray) -> np.ndarray:
    """Planar linear RGB → the positive XYB planes SSIMULACRA2 compares."""
    r, g, b = lin[0], lin[1], lin[2]
    out = np.empty_like(lin)
    for i in range(3):
        m = _OPSIN[i]
        mixed = r * _F32(m[0]) + g * _F32(m[1])
        mixed += b * _F32(m[2])
        mixed += _F32(_BIAS)
        np.maximum(mixed, 0.0, out=mixed)
        # float32 pow(x, 1/3): within a few ulp of cbrt (libjxl's own cube root is a 6-ulp
        # approximation) and half the time of np.cbrt
        np.power(mixed, _THIRD, out=out[i])
        out[i] -= _F32(_CBRT_BIAS)
    m0, m1, m2 = out[0], out[1], out[2]
    x = (m0 - m1) * _F32(0.5)
    y = (m0 + m1) * _F32(0.5)
    out[2] = (m2 - y) + _F32(0.55)
    out[0] = x * _F32(14.0) + _F32(0.42)
    out[1] = y + _F32(0.01)
    return out


def blur(x: np.ndarray) -> np.ndarray:
    """Separable σ = 1.5 Gaussian (libjxl's recursive-Gaussian kernel) of a 2-D float32 plane,
    zero outside the image. Works in stripes of ``_STRIPE`` rows that stay in cache (2× faster
    than whole-plane passes at 4 MP; the same operations in the same order)."""
    h, w = x.shape
    pad = np.zeros((h, w + 2 * _R), dtype=_F32)
    pad[:, _R:_R + w] = x
    hz = np.zeros((h + 2 * _R, w), dtype=_F32)  # horizontal pass with zero halo rows
    out = np.empty((h, w), dtype=_F32)
    tmp = np.empty((min(h, _STRIPE), w), dtype=_F32)
    for y0 in range(0, h, _STRIPE):
        y1 = min(h, y0 + _STRIPE)
        src, dst, t = pad[y0:y1], hz[_R + y0:_R + y1], tmp[:y1 - y0]
        np.multiply(src[:, _R:_R + w], _TAPS[0], out=dst)
        for d in range(1, _R + 1):
            np.add(src[:, _R - d:_R - d + w], src[:, _R + d:_R + d + w], out=t)
            t *= _TAPS[d]
            dst += t
    for y0 in range(0, h, _STRIPE):
        y1 = min(h, y0 + _STRIPE)
        o, t = out[y0:y1], tmp[:y1 - y0]
        np.multiply(hz[_R + y0:_R + y1], _TAPS[0], out=o)
        for d in range(1, _R + 1):
            np.add(hz[_R + y0 - d:_R + y1 - d], hz[_R + y0 + d:_R + y1 + d], out=t)
            t *= _TAPS[d]
            o += t
    return out


def _norms(x: np.ndarray) -> tuple[float, float]:
    """(mean, 4th root of the mean 4th power) with float64 accumulation."""
    n = x.size
    s1 = float(np.sum(x, dtype=np.float64))
    q = x * x
    q *= q
    s4 = float(np.sum(q, dtype=np.float64))
    return s1 / n, math.sqrt(math.sqrt(s4 / n))


def _prefactor(h: int, w: int) -> int:
    n = h * w
    return 1 if n <= MAX_PIXELS else math.ceil(math.sqrt(n / MAX_PIXELS))


def _pyramid(rgb: np.ndarray) -> list[np.ndarray]:
    """The XYB planes of every scale (libjxl's stopping rule)."""
    h, w = rgb.shape[:2]
    if h < 8 or w < 8:
        raise ValueError(f"SSIMULACRA2 needs at least 8x8 pixels, got {w}x{h}")
    lin = linear_rgb(rgb)
    f = _prefactor(h, w)
    if f > 1:
        lin = downsample(lin, f)
    levels: list[np.ndarray] = []
    for scale in range(NUM_SCALES):
        if lin.shape[1] < 8 or lin.shape[2] < 8:
            break
        if scale:
            lin = downsample(lin, 2)
        levels.append(xyb(lin))
    return levels


@dataclass(frozen=True)
class _Scale:
    img: np.ndarray  # (3, h, w) XYB
    mu: np.ndarray  # blurred img
    var: np.ndarray  # blurred img² − mu²


class Reference:
    """The reference side of SSIMULACRA2, computed once and reused for every output."""

    def __init__(self, rgb: np.ndarray) -> None:
        """``rgb``: 8-bit sRGB ``(h, w, 3)`` or gray ``(h, w)`` (alpha already flattened)."""
        self.shape = tuple(rgb.shape[:2])
        self.scales: list[_Scale] = []
        for img in _pyramid(rgb):
            mu = np.stack([blur(img[c]) for c in range(3)])
            var = np.stack([blur(img[c] * img[c]) - mu[c] * mu[c] for c in range(3)])
            self.scales.append(_Scale(img, mu, var))

    def score(self, rgb: np.ndarray) -> float:
        """SSIMULACRA2 of ``rgb`` (same size and layout rules) against this reference."""
        if tuple(rgb.shape[:2]) != self.shape:
            raise ValueError(f"SSIMULACRA2 images differ in size: {self.shape} vs {rgb.shape[:2]}")
        levels = _pyramid(rgb)
        ssim_avg = np.zeros((len(levels), 3, 2))
        edge_avg = np.zeros((len(levels), 3, 4))
        for s, (ref, img2) in enumerate(zip(self.scales, levels, strict=True)):
            for c in range(3):
                a, b, mu1 = ref.img[c], img2[c], ref.mu[c]
                mu2 = blur(b)
                ssim_avg[s, c] = _norms(_ssim_map(mu1, ref.var[c], a, b, mu2))
                # edge map: (1 + |b − μ2|) / (1 + |a − μ1|) − 1
                d1 = np.subtract(b, mu2)
                np.abs(d1, out=d1)
                d1 += _F32(1.0)
                den = np.subtract(a, mu1)
                np.abs(den, out=den)
                den += _F32(1.0)
                d1 /= den
                d1 -= _F32(1.0)
                edge_avg[s, c, 0:2] = _norms(np.maximum(d1, 0.0, out=den))
                np.negative(d1, out=d1)
                edge_avg[s, c, 2:4] = _norms(np.maximum(d1, 0.0, out=d1))
        return final_score(ssim_avg, edge_avg)


def _ssim_map(mu1: np.ndarray, var1: np.ndarray, a: np.ndarray, b: np.ndarray, mu2: np.ndarray) -> np.ndarray:
    """``max(0, 1 − (1 − (μ1−μ2)²)·(2(σ12 − μ1μ2) + C2) / ((σ1² − μ1²) + (σ2² − μ2²) + C2))``
    for one plane, in libjxl's order of operations, with few temporaries."""
    s12 = blur(a * b)
    t = mu1 * mu2
    s12 -= t
    s12 *= _F32(2.0)
    s12 += _C2  # num_s
    np.multiply(b, b, out=t)
    den = blur(t)
    np.multiply(mu2, mu2, out=t)
    den -= t
    np.add(var1, den, out=den)
    den += _C2  # den_s
    np.subtract(mu1, mu2, out=t)
    t *= t
    np.subtract(_F32(1.0), t, out=t)  # num_m
    t *= s12
    t /= den
    np.subtract(_F32(1.0), t, out=t)
    np.maximum(t, 0.0, out=t)
    return t


def final_score(ssim_avg: np.ndarray, edge_avg: np.ndarray) -> float:
    """The weighted sum of the 108 (or fewer, for small images) pooled values → the score.

    ``ssim_avg[scale, plane] = (1-norm, 4-norm)``; ``edge_avg[scale, plane] = (artifact 1-norm,
    artifact 4-norm, detail-lost 1-norm, detail-lost 4-norm)``. As in libjxl, the weight index
    only advances over the scales that exist."""
    total = 0.0
    i = 0
    for c in range(3):
        for s in range(ssim_avg.shape[0]):
            for n in range(2):
                total += WEIGHTS[i] * abs(ssim_avg[s, c, n])
                total += WEIGHTS[i + 1] * abs(edge_avg[s, c, n])
                total += WEIGHTS[i + 2] * abs(edge_avg[s, c, n + 2])
                i += 3
    total *= 0.9562382616834844
    total = (2.326765642916932 * total - 0.020884521182843837 * total * total
             + 6.248496625763138e-05 * total * total * total)
    if total <= 0.0:
        return 100.0
    return float(100.0 - 10.0 * total ** 0.6276336467831387)


def ssimulacra2(reference: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA2 of two equally sized 8-bit sRGB arrays (``(h, w, 3)`` or ``(h, w)``)."""
    return Reference(reference).score(distorted)
