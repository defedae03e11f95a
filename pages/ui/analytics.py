"""History & analytics: turn the API's image and job records into a pandas frame and altair charts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import altair as alt
import pandas as pd

#: queue wait, engine stages, then the processor's own (S3 read/write, DynamoDB claim, whole invocation)
STAGES = (
    "queue_wait",
    "download",
    "decode",
    "transform",
    "encode",
    "metrics",
    "total",
    "upload",
    "record",
    "service_total",
)
JOB_COLUMNS = [
    "created_at",
    "filename",
    "status",
    "preset",
    "input_format",
    "output_format",
    "input_width",
    "input_height",
    "input_mp",
    "width",
    "height",
    "bytes_before",
    "bytes_after",
    "bytes_saved",
    "saved_pct",
    "ratio",
    "bpp",
    "ssim",
    "psnr",
    *[f"ms_{s}" for s in STAGES],
    "error_code",
    "error_message",
    "attempts",
    "job_id",
    "image_id",
]

#: the columns of JOB_COLUMNS that are not numbers (created_at becomes a datetime)
TEXT_COLUMNS = frozenset(
    {"created_at", "filename", "status", "preset", "input_format", "output_format",
     "error_code", "error_message", "job_id", "image_id"}
)


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def jobs_frame(
    jobs: Iterable[dict[str, Any]],
    images: Iterable[dict[str, Any]],
    preset_by_hash: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per job with its image's facts joined in; stable columns even when empty."""
    by_id = {img.get("image_id"): img for img in images}
    presets = preset_by_hash or {}
    rows = []
    for job in jobs:
        image = by_id.get(job.get("image_id"), {})
        result = job.get("result") or {}
        facts = job.get("facts") or {}
        inp = facts.get("input") or image.get("facts") or {}
        out = facts.get("output") or {}
        timings = result.get("timings_ms") or facts.get("timings_ms") or {}
        before = result.get("original_bytes") or inp.get("bytes") or image.get("bytes")
        after = result.get("bytes") or out.get("bytes")
        width = result.get("width") or out.get("width")
        height = result.get("height") or out.get("height")
        recipe_hash = str(job.get("job_id", "")).rpartition("-")[2]
        in_w, in_h = inp.get("width"), inp.get("height")
        error = job.get("error") or {}
        rows.append(
            {
                "created_at": job.get("created_at"),
                "filename": job.get("filename") or image.get("filename"),
                "status": job.get("status"),
                "preset": job.get("preset") or presets.get(recipe_hash, "custom"),
                "input_format": (inp.get("format") or "").lower() or None,
                "output_format": (result.get("format") or out.get("format") or "").lower() or None,
                "input_width": in_w,
                "input_height": in_h,
                "input_mp": in_w * in_h / 1e6 if in_w and in_h else None,
                "width": width,
                "height": height,
                "bytes_before": before,
                "bytes_after": after,
                "bytes_saved": before - after if before and after else None,
                "saved_pct": (1 - after / before) * 100 if before and after else None,
                "ratio": result.get("compression_ratio")
                or facts.get("compression_ratio")
                or (before / after if before and after else None),
                "bpp": facts.get("bits_per_pixel")
                or (after * 8 / (width * height) if after and width and height else None),
                "ssim": result.get("ssim", _get(facts, "metrics", "ssim")),
                "psnr": result.get("psnr", _get(facts, "metrics", "psnr")),
                **{f"ms_{s}": timings.get(s) for s in STAGES},
                "error_code": error.get("code"),
                "error_message": error.get("message"),
                "attempts": job.get("attempts"),
                "job_id": job.get("job_id"),
                "image_id": job.get("image_id"),
            }
        )
    df = pd.DataFrame(rows, columns=JOB_COLUMNS)
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True, errors="coerce")
    numeric = [c for c in JOB_COLUMNS if c not in TEXT_COLUMNS]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce")
    # PSNR of identical images is infinite; the API may send a huge number or null for it
    df.loc[df["psnr"] > 1e6, "psnr"] = float("inf")
    return df.sort_values("created_at", ascending=False, na_position="last").reset_index(drop=True)


def images_frame(images: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per uploaded original."""
    rows = []
    for img in images:
        facts = img.get("facts") or {}
        rows.append(
            {
                "created_at": img.get("created_at"),
                "filename": img.get("filename"),
                "status": img.get("status"),
                "content_type": img.get("content_type"),
                "format": (facts.get("format") or "").lower() or None,
                "width": facts.get("width"),
                "height": facts.get("height"),
                "bytes": img.get("bytes") or facts.get("bytes") or img.get("size"),
                "image_id": img.get("image_id"),
            }
        )
    df = pd.DataFrame(
        rows,
        columns=[
            "created_at",
            "filename",
            "status",
            "content_type",
            "format",
            "width",
            "height",
            "bytes",
            "image_id",
        ],
    )
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True, errors="coerce")
    return df.sort_values("created_at", ascending=False, na_position="last").reset_index(drop=True)


# --- charts -----------------------------------------------------------------------------------


def chart_timings(quantiles: pd.DataFrame) -> alt.Chart:
    """p50/p95 per stage, grouped bars."""
    return (
        alt.Chart(quantiles)
        .mark_bar()
        .encode(
            x=alt.X("stage:N", sort=list(STAGES), title=None),
            xOffset="quantile:N",
            y=alt.Y("ms:Q", title="milliseconds"),
            color=alt.Color("quantile:N", scale=alt.Scale(range=["#2a9d8f", "#e76f51"])),
            tooltip=["stage", "quantile", alt.Tooltip("ms:Q", format=".1f")],
        )
        .properties(title="Per-stage timings, p50 / p95 (ms)", height=260)
    )


# --- from GET /stats (the rollups: exact counts and sums, quantiles from histograms) -----------

STATUS_COLORS = alt.Scale(domain=["succeeded", "failed"], range=["#2a9d8f", "#e63946"])


def stats_days_frame(stats: dict[str, Any]) -> pd.DataFrame:
    """Jobs per day and status: day, status, jobs."""
    rows = [{"day": d["day"], "status": d["status"], "jobs": d["jobs"]} for d in stats.get("days", [])]
    return pd.DataFrame(rows, columns=["day", "status", "jobs"])


def chart_jobs_per_day(days: pd.DataFrame) -> alt.Chart:
    """Jobs per day (UTC creation day), stacked by status."""
    return (
        alt.Chart(days)
        .mark_bar()
        .encode(
            x=alt.X("day:T", title="created (UTC day)"),
            y=alt.Y("sum(jobs):Q", title="jobs"),
            color=alt.Color("status:N", scale=STATUS_COLORS),
            tooltip=["day:T", "status", alt.Tooltip("sum(jobs):Q", title="jobs")],
        )
        .properties(title="Jobs per day", height=260)
    )


def format_quantiles_frame(stats: dict[str, Any], figure: str = "compression_ratio") -> pd.DataFrame:
    """Per output format: jobs and the figure's p5/p25/p50/p75/p95 (succeeded jobs)."""
    rows = []
    for fmt, data in (stats.get("by_format") or {}).items():
        q = data.get(figure) or {}
        if q:
            rows.append({"format": fmt, "jobs": data.get("jobs"),
                         **{p: q.get(p) for p in ("p5", "p25", "p50", "p75", "p95")}})
    return pd.DataFrame(rows, columns=["format", "jobs", "p5", "p25", "p50", "p75", "p95"])


def chart_ratio_by_format_quantiles(frame: pd.DataFrame) -> alt.Chart:
    """Compression ratio per output format: p5–p95 whiskers, p25–p75 box, p50 tick."""
    base = alt.Chart(frame).encode(x=alt.X("format:N", title="output format"))
    y = alt.Y("p5:Q", title="compression ratio (×)", scale=alt.Scale(zero=False))
    whisker = base.mark_rule().encode(y=y, y2="p95:Q")
    box = base.mark_bar(size=28).encode(y="p25:Q", y2="p75:Q", color=alt.Color("format:N", legend=None),
                                        tooltip=["format", "jobs", "p5", "p25", "p50", "p75", "p95"])
    mid = base.mark_tick(color="black", size=28, thickness=2).encode(y="p50:Q")
    return (whisker + box + mid).properties(title="Compression ratio by output format (p5–p95)", height=260)


def distribution_frame(stats: dict[str, Any], figure: str) -> pd.DataFrame:
    """One histogram's buckets: lo, hi, jobs."""
    dist = (stats.get("distributions") or {}).get(figure) or {}
    rows = [{"lo": b["lo"], "hi": b["hi"], "jobs": b["count"]} for b in dist.get("buckets", [])]
    return pd.DataFrame(rows, columns=["lo", "hi", "jobs"])


def chart_distribution(frame: pd.DataFrame, title: str, axis: str) -> alt.Chart:
    """A log-bucket histogram (log x axis)."""
    return (
        alt.Chart(frame)
        .mark_rect(color="#457b9d")
        .encode(
            x=alt.X("lo:Q", scale=alt.Scale(type="log"), title=axis),
            x2="hi:Q",
            y=alt.Y("jobs:Q", title="jobs"),
            tooltip=[alt.Tooltip("lo:Q", format=".3g"), alt.Tooltip("hi:Q", format=".3g"), "jobs"],
        )
        .properties(title=title, height=260)
    )


def stage_quantiles_frame(stats: dict[str, Any]) -> pd.DataFrame:
    """p50 and p95 of every stage (long form: stage, quantile, ms), as ``chart_timings`` takes."""
    rows = []
    for stage in STAGES:
        dist = (stats.get("distributions") or {}).get(f"ms_{stage}")
        if dist:
            rows.append({"stage": stage, "quantile": "p50", "ms": dist["p50"]})
            rows.append({"stage": stage, "quantile": "p95", "ms": dist["p95"]})
    return pd.DataFrame(rows, columns=["stage", "quantile", "ms"])


def errors_frame(stats: dict[str, Any]) -> pd.DataFrame:
    """Failed jobs per error code."""
    return pd.DataFrame(stats.get("errors") or [], columns=["code", "jobs"])


def chart_failures_by_code(frame: pd.DataFrame) -> alt.Chart:
    """Failed jobs per error code (from the rollups)."""
    return (
        alt.Chart(frame)
        .mark_bar(color="#e63946")
        .encode(
            y=alt.Y("code:N", sort="-x", title="error code"),
            x=alt.X("jobs:Q", title="failed jobs"),
            tooltip=["code", "jobs"],
        )
        .properties(title="Failures by error code", height=260)
    )


def groups_frame(stats: dict[str, Any]) -> pd.DataFrame:
    """Totals per status × format × preset × way in."""
    cols = ["status", "format", "preset", "arrival", "jobs", "bytes_in", "bytes_out", "engine_ms",
            "processor_ms"]
    return pd.DataFrame([{c: g.get(c) for c in cols} for g in stats.get("groups", [])], columns=cols)
