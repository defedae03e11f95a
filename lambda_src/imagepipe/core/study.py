"""Corpus studies: many images × one grid, aggregated per encoder (pure numbers, no images).

Input: per image, the sweep points of one grid (``core/sweep.py``). Output:

- **rate–distortion curves** per encoder: for every quality, the mean and median bits per pixel
  and the mean SSIMULACRA2 / SSIM over the images that have that point;
- **bytes saved against a baseline encoder at equal score** (BD-rate style) per metric: per
  image, both encoders' curves give log(bpp) as a function of the score (the points sorted by
  size, each kept only when it scores above every smaller one, linearly interpolated); the mean
  of log(bpp_encoder / bpp_baseline) over the score range *both* curves cover is that image's
  log bytes ratio. The study's figure is exp(mean over images) with a **bootstrap 95%
  confidence interval** over the images (resampled with replacement, fixed seed, so a study
  always reports the same interval). An image whose curves do not overlap in score is left
  out of that encoder's figure (``n_images`` says how many count).

The classic BD-rate (Bjøntegaard) fits a cubic through four points in log rate; with the 4–20
qualities of a grid, piecewise-linear interpolation is as accurate and never overshoots.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

SCORES = ("ssimulacra2", "ssim")
BOOTSTRAP_SAMPLES = 2000
SAMPLES_PER_CURVE = 64


def encoder_of(point: Mapping[str, Any]) -> str:
    """The encoder a sweep point belongs to (``jpeg`` points from before the axis are turbo)."""
    enc = point.get("encoder")
    if enc:
        return str(enc)
    return "jpeg:turbo" if point.get("format") == "jpeg" else str(point.get("format"))


def _curve(points: Iterable[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores ascending, log bpp) of the points that improve on every smaller point."""
    pts = sorted((float(p["bpp"]), float(p[metric])) for p in points
                 if p.get(metric) is not None and p.get("bpp") and p.get("quality") is not None)
    s: list[float] = []
    r: list[float] = []
    for bpp, score in pts:
        if not s or score > s[-1]:
            s.append(score)
            r.append(math.log(bpp))
    if len(s) < 2:
        return None
    return np.asarray(s), np.asarray(r)


def log_ratio(base: Sequence[Mapping[str, Any]], test: Sequence[Mapping[str, Any]],
              metric: str) -> float | None:
    """Mean log(bpp_test / bpp_base) at equal ``metric`` over the shared score range (None when
    either curve has fewer than two useful points or the ranges do not overlap)."""
    a, b = _curve(base, metric), _curve(test, metric)
    if a is None or b is None:
        return None
    lo, hi = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    if not hi > lo:
        return None
    s = np.linspace(lo, hi, SAMPLES_PER_CURVE)
    return float(np.mean(np.interp(s, b[0], b[1]) - np.interp(s, a[0], a[1])))


def bootstrap_ci(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` (resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _saved(log_r: float) -> float:
    return round((1.0 - math.exp(log_r)) * 100.0, 2)


def bytes_saved(per_image: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str,
                metric: str) -> dict[str, dict[str, Any]]:
    """Per encoder: bytes ratio vs ``baseline`` at equal ``metric`` (geometric mean over images),
    ``saved_pct`` and its bootstrap 95% interval ``saved_pct_ci`` [low, high], ``n_images``."""
    by_image: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for image_id, points in per_image.items():
        for p in points:
            by_image.setdefault(image_id, {}).setdefault(encoder_of(p), []).append(p)
    encoders = sorted({e for encs in by_image.values() for e in encs})
    out: dict[str, dict[str, Any]] = {}
    for enc in encoders:
        vals = [lr for encs in by_image.values()
                if baseline in encs and enc in encs
                and (lr := log_ratio(encs[baseline], encs[enc], metric)) is not None]
        if not vals:
            out[enc] = {"bytes_ratio": None, "saved_pct": None, "saved_pct_ci": None, "n_images": 0}
            continue
        mean = float(np.mean(vals))
        lo, hi = bootstrap_ci(vals)
        out[enc] = {"bytes_ratio": round(math.exp(mean), 4), "saved_pct": _saved(mean),
                    "saved_pct_ci": [_saved(hi), _saved(lo)], "n_images": len(vals),
                    "per_image_ratio": [round(math.exp(v), 4) for v in vals]}
    return out


def curves(per_image: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Per encoder, one row per quality: mean/median bpp, mean scores, median encode ms, n."""
    cells: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for points in per_image.values():
        for p in points:
            cells.setdefault((encoder_of(p), p.get("quality")), []).append(p)
    out: dict[str, list[dict[str, Any]]] = {}
    def order(kv: tuple[tuple[str, Any], Any]) -> tuple[str, int]:
        return kv[0][0], -1 if kv[0][1] is None else int(kv[0][1])

    for (enc, q), pts in sorted(cells.items(), key=order):
        row: dict[str, Any] = {"quality": q, "n": len(pts),
                               "bpp_mean": round(statistics.fmean(p["bpp"] for p in pts), 5),
                               "bpp_median": round(statistics.median(p["bpp"] for p in pts), 5),
                               "encode_ms_median": round(statistics.median(p.get("encode_ms") or 0
                                                                           for p in pts), 2)}
        for m in SCORES:
            vals = [p[m] for p in pts if p.get(m) is not None]
            row[f"{m}_mean"] = round(statistics.fmean(vals), 5) if vals else None
        out.setdefault(enc, []).append(row)
    return out


def aggregate(per_image: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str) -> dict[str, Any]:
    """The whole study summary: ``curves``, ``bytes_saved`` per metric, ``encode_ms`` per encoder."""
    enc_ms: dict[str, list[float]] = {}
    for points in per_image.values():
        for p in points:
            if p.get("encode_ms") is not None:
                enc_ms.setdefault(encoder_of(p), []).append(float(p["encode_ms"]))
    return {
        "baseline": baseline,
        "images": len(per_image),
        "curves": curves(per_image),
        "bytes_saved": {m: bytes_saved(per_image, baseline, m) for m in SCORES},
        "encode_ms_median": {e: round(statistics.median(v), 2) for e, v in sorted(enc_ms.items())},
    }
