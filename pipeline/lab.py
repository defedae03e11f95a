"""Client-side helpers of the compression lab (the Compare page and the lab benchmark use them).

Pure functions over the points ``GET /sweeps/{id}`` returns and the jobs ``GET /jobs/{id}``
returns; the only network access is through a ``pipeline.client.Client`` passed in.

- ``points_frame(points)``: the points as a DataFrame with a ``setting`` label and ``pareto``;
- ``pareto_frontier(points, metric)``: the points no other point beats on both size and score;
- ``recommend(points, metric, minimum)``: the cheapest setting per format meeting a target;
- ``batch_report(client, image_ids, presets)`` → rows per image × preset; ``aggregate(rows)``
  totals per preset; ``to_csv(rows)``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

#: the scores a sweep point can carry (``ssimulacra2`` only when the grid asked for it)
METRICS = ("ssim", "psnr", "ssimulacra2")
SIZE_AXES = ("bytes", "bpp")


def series(p: dict[str, Any]) -> str:
    """The encoder a point belongs to: ``jpeg:mozjpeg``, ``webp``, ...; the default JPEG encoder
    (``jpeg:turbo``, and points from before encoders were a sweep axis) shows as ``jpeg``."""
    enc = p.get("encoder")
    return str(p["format"] if not enc or enc == "jpeg:turbo" else enc)


def setting_label(p: dict[str, Any]) -> str:
    """``"webp q80 method=6"`` / ``"jpeg:mozjpeg q80"`` / ``"png lossless"``."""
    q = "lossless" if p.get("quality") is None else f"q{p['quality']}"
    s = f"{series(p)} {q}"
    if p.get("option_name"):
        s += f" {str(p['option_name']).split('.')[-1]}={p.get('option_value')}"
    return s


def pareto_frontier(points: Sequence[dict[str, Any]], metric: str = "ssim",
                    size: str = "bytes") -> list[dict[str, Any]]:
    """The non-dominated points (smaller ``size`` and higher ``metric`` are better), by size.

    A point is on the frontier when no other point is at most as large AND scores at least as
    well with one of the two strictly better. Ties (same size and score) keep the first."""
    ranked = sorted((p for p in points if p.get(metric) is not None and p.get(size) is not None),
                    key=lambda p: (p[size], -p[metric]))
    frontier: list[dict[str, Any]] = []
    best = float("-inf")
    for p in ranked:
        if p[metric] > best:
            frontier.append(p)
            best = p[metric]
    return frontier


def points_frame(points: Sequence[dict[str, Any]], metric: str = "ssim") -> pd.DataFrame:
    """One row per point with ``setting``, ``kib`` and ``pareto`` (on the frontier for ``metric``);
    ``format`` holds the encoder (:func:`series`), the lab's axis."""
    cols = ["label", "setting", "format", "quality", "option_name", "option_value", "bytes", "kib", "bpp",
            "ssim", "psnr", "ssimulacra2", "encode_ms", "width", "height", "pareto"]
    if not points:
        return pd.DataFrame(columns=cols)
    on = {p["label"] for p in pareto_frontier(points, metric)}
    rows = []
    for p in points:
        rows.append({**{k: p.get(k) for k in cols}, "setting": setting_label(p), "format": series(p),
                     "kib": round(p["bytes"] / 1024, 2), "pareto": p["label"] in on,
                     "option_value": None if p.get("option_value") is None else str(p["option_value"])})
    return pd.DataFrame(rows, columns=cols)


def recommend(points: Sequence[dict[str, Any]], metric: str = "ssim", minimum: float = 0.95) -> pd.DataFrame:
    """Per encoder (:func:`series`), the smallest point with ``metric >= minimum`` (those that
    never reach it are listed with ``meets = False`` and their best score), cheapest first."""
    by_fmt: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_fmt.setdefault(series(p), []).append(p)
    rows = []
    for fmt, pts in by_fmt.items():
        ok = [p for p in pts if p.get(metric) is not None and p[metric] >= minimum]
        if ok:
            p = min(ok, key=lambda p: (p["bytes"], -p[metric]))
            rows.append({"format": fmt, "setting": setting_label(p), "label": p["label"], "meets": True,
                         "bytes": p["bytes"], "bpp": p.get("bpp"), metric: p[metric]})
        else:
            p = max(pts, key=lambda p: p.get(metric) or float("-inf"))
            rows.append({"format": fmt, "setting": f"none reaches {minimum:g} (best: {setting_label(p)})",
                         "label": p["label"], "meets": False, "bytes": None, "bpp": None,
                         metric: p.get(metric)})
    df = pd.DataFrame(rows, columns=["format", "setting", "label", "meets", "bytes", "bpp", metric])
    if df.empty:
        return df
    cheapest = df[df["meets"]]["bytes"].min() if df["meets"].any() else None
    df["vs_cheapest"] = [None if b is None or pd.isna(b) or cheapest is None else round(b / cheapest, 3)
                         for b in df["bytes"]]
    df = df.sort_values(["meets", "bytes"], ascending=[False, True], na_position="last")
    return df.reset_index(drop=True)


def point_delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """B relative to A: byte and score differences (``None`` where a side has no value)."""
    def diff(k: str) -> float | None:
        return None if a.get(k) is None or b.get(k) is None else round(b[k] - a[k], 6)

    bytes_pct = None
    if a.get("bytes") and b.get("bytes") is not None:
        bytes_pct = round(100 * (b["bytes"] / a["bytes"] - 1), 2)
    return {"bytes": diff("bytes"), "bytes_pct": bytes_pct, "ssim": diff("ssim"), "psnr": diff("psnr"),
            "ssimulacra2": diff("ssimulacra2")}


# --- batch report ------------------------------------------------------------------------------

REPORT_COLUMNS = ["image_id", "filename", "preset", "status", "error", "format", "width", "height",
                  "original_bytes", "output_bytes", "saved_pct", "ssim", "psnr", "job_id"]


def report_row(image: dict[str, Any], preset: str, job: dict[str, Any]) -> dict[str, Any]:
    """One image × preset row from a finished job."""
    res = job.get("result") or {}
    orig = res.get("original_bytes") or image.get("bytes")
    out = res.get("bytes")
    saved = None if not orig or out is None else round(100 * (1 - out / orig), 2)
    err = job.get("error") or {}
    return {"image_id": image.get("image_id"), "filename": image.get("filename"), "preset": preset,
            "status": job.get("status"), "error": err.get("code"), "format": res.get("format"),
            "width": res.get("width"), "height": res.get("height"), "original_bytes": orig,
            "output_bytes": out, "saved_pct": saved, "ssim": res.get("ssim"), "psnr": res.get("psnr"),
            "job_id": job.get("job_id")}


def batch_report(client: Any, images: Iterable[dict[str, Any]], presets: dict[str, dict[str, Any]],
                 timeout: float = 180.0,
                 on_progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every preset on every image through the API (jobs are deterministic, so a repeated
    report reuses finished outputs) and return one row per image × preset."""
    images = list(images)
    pairs = [(image, name) for image in images for name in presets]
    accepted = client.process_many({"image_id": image["image_id"], "recipe": presets[name], "preset": name}
                                   for image, name in pairs)  # POST /jobs/batch, 100 per request
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for i, ((image, name), outcome) in enumerate(zip(pairs, accepted, strict=True)):
        if "error" in outcome:  # refused at submission (e.g. the image was deleted meanwhile)
            job = {"status": "failed", "error": outcome["error"]}
        else:
            job = client.wait(outcome["job_id"], timeout=max(1.0, deadline - time.monotonic()))
        rows.append(report_row(image, name, job))
        if on_progress is not None:
            on_progress(i + 1, len(pairs))
    return rows


def aggregate(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per preset: images, failures, total bytes before/after, overall saving, median and worst SSIM."""
    out = []
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    for name in presets:
        rs = [r for r in rows if r["preset"] == name]
        ok = [r for r in rs if r["status"] == "succeeded" and r["output_bytes"] is not None]
        sized = [r for r in ok if r["saved_pct"] is not None]  # original size known: a saving exists
        before = sum(r["original_bytes"] for r in sized)
        after = sum(r["output_bytes"] for r in sized)
        ssims = [r["ssim"] for r in ok if r["ssim"] is not None]
        out.append({"preset": name, "images": len(rs), "failed": len(rs) - len(ok),
                    "original_bytes": before, "output_bytes": after,
                    "saved_pct": round(100 * (1 - after / before), 2) if before else None,
                    "median_saved_pct": statistics.median(r["saved_pct"] for r in sized) if sized else None,
                    "median_ssim": statistics.median(ssims) if ssims else None,
                    "min_ssim": min(ssims) if ssims else None})
    return pd.DataFrame(out, columns=["preset", "images", "failed", "original_bytes", "output_bytes",
                                      "saved_pct", "median_saved_pct", "median_ssim", "min_ssim"])


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The per-image rows as CSV text (the report's export)."""
    df = pd.DataFrame(list(rows), columns=REPORT_COLUMNS)
    for col in ("width", "height", "original_bytes", "output_bytes"):  # ints stay ints beside blanks
        df[col] = df[col].astype("Int64")
    return df.to_csv(index=False)


# --- corpus studies ---------------------------------------------------------------------------------

STUDY_POINT_COLUMNS = ["study_id", "image_id", "filename", "encoder", "format", "quality", "bytes", "bpp",
                       "ssim", "psnr", "ssimulacra2", "encode_ms", "width", "height"]


def study_curves_frame(study: dict[str, Any]) -> pd.DataFrame:
    """The study's rate–distortion curves: one row per encoder × quality (means over images)."""
    rows = [{"encoder": enc, **row} for enc, rs in ((study.get("summary") or {}).get("curves") or {}).items()
            for row in rs]
    cols = ["encoder", "quality", "n", "bpp_mean", "bpp_median", "ssimulacra2_mean", "ssim_mean",
            "encode_ms_median"]
    return pd.DataFrame(rows, columns=cols)


def study_savings_frame(study: dict[str, Any], metric: str = "ssimulacra2") -> pd.DataFrame:
    """Per encoder: bytes vs the baseline at equal ``metric`` with the 95% interval, images
    counted and median encode time; the biggest saving first."""
    summary = study.get("summary") or {}
    saved = (summary.get("bytes_saved") or {}).get(metric) or {}
    ms = summary.get("encode_ms_median") or {}
    rows = []
    for enc, v in saved.items():
        ci = v.get("saved_pct_ci") or [None, None]
        rows.append({"encoder": enc, "bytes_ratio": v.get("bytes_ratio"), "saved_pct": v.get("saved_pct"),
                     "ci_low": ci[0], "ci_high": ci[1], "n_images": v.get("n_images"),
                     "encode_ms_median": ms.get(enc)})
    df = pd.DataFrame(rows, columns=["encoder", "bytes_ratio", "saved_pct", "ci_low", "ci_high", "n_images",
                                     "encode_ms_median"])
    return df.sort_values("saved_pct", ascending=False, na_position="last").reset_index(drop=True)


def study_points_csv(study: dict[str, Any]) -> str:
    """Every measured point of every image as CSV (one row per image × setting)."""
    rows = []
    for im in study.get("images") or []:
        for p in im.get("points") or []:
            rows.append({"study_id": study.get("study_id"), "image_id": im.get("image_id"),
                         "filename": im.get("filename"), **{k: p.get(k) for k in STUDY_POINT_COLUMNS[3:]}})
    return pd.DataFrame(rows, columns=STUDY_POINT_COLUMNS).to_csv(index=False)


def study_json(study: dict[str, Any]) -> str:
    """The whole study (grid, per-image points, summary, codec and library ``versions``) as JSON."""
    keep = ("study_id", "name", "created_at", "status", "baseline", "grid", "resize", "progress", "summary",
            "versions", "images")
    return json.dumps({k: study.get(k) for k in keep}, indent=1, sort_keys=True, default=str)
