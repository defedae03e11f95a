"""The Compare page's pure helpers: the rate–distortion chart and the difference heatmap.

No Streamlit calls here, so both are unit-testable; the page only places what they return.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

AXIS_TITLES = {
    "bytes": "File size (KiB)",
    "bpp": "Bits per pixel",
    "ssim": "SSIM (luma, 8×8 windows)",
    "psnr": "PSNR (dB, RGB)",
    "ssimulacra2": "SSIMULACRA2 (100 = identical)",
}


def rd_chart(df: pd.DataFrame, size: str = "bytes", metric: str = "ssim") -> alt.LayerChart:
    """Size (x) against ``metric`` (y): a line per format (and option value), points with the
    settings in tooltips, and the Pareto frontier drawn on top as a dashed black line with
    hollow rings around its points. A ``pick`` point selection (click; double-click clears) on
    the ``label`` field lets the page take the clicked setting. ``df`` is
    ``pipeline.lab.points_frame`` output."""
    data = df.copy()
    x_field = "kib" if size == "bytes" else "bpp"
    data["series"] = [
        f if o is None or pd.isna(o) else f"{f} {str(n).split('.')[-1]}={o}"
        for f, n, o in zip(data["format"], data["option_name"], data["option_value"], strict=True)
    ]
    x = alt.X(f"{x_field}:Q", title=AXIS_TITLES[size], scale=alt.Scale(zero=False))
    y = alt.Y(f"{metric}:Q", title=AXIS_TITLES[metric], scale=alt.Scale(zero=False))
    tooltip = [
        alt.Tooltip("setting:N", title="Setting"),
        alt.Tooltip("kib:Q", title="KiB", format=".1f"),
        alt.Tooltip("bpp:Q", title="bpp", format=".3f"),
        alt.Tooltip("ssim:Q", title="SSIM", format=".5f"),
        alt.Tooltip("psnr:Q", title="PSNR dB", format=".2f"),
        *([alt.Tooltip("ssimulacra2:Q", title="SSIMULACRA2", format=".2f")]
          if "ssimulacra2" in data and data["ssimulacra2"].notna().any() else []),
        alt.Tooltip("encode_ms:Q", title="Encode ms", format=".0f"),
        alt.Tooltip("pareto:N", title="On the Pareto frontier"),
    ]
    base = alt.Chart(data)
    lines = base.mark_line(point=True, strokeWidth=1.5).encode(
        x=x,
        y=y,
        color=alt.Color("series:N", title="Format"),
        detail="series:N",
        order=alt.Order("quality:Q"),
        tooltip=tooltip,
    )
    front = data[data["pareto"]].sort_values(x_field)
    frontier = (
        alt.Chart(front)
        .mark_line(color="black", strokeDash=[6, 3], strokeWidth=2)
        .encode(x=x, y=y, order=alt.Order(f"{x_field}:Q"))
    )
    rings = (
        alt.Chart(front)
        .mark_point(color="black", size=140, filled=False, strokeWidth=2)
        .encode(x=x, y=y, tooltip=tooltip)
    )
    pick = alt.selection_point(name="pick", fields=["label"], on="click", clear="dblclick")
    dots = (
        base.mark_point(filled=True, size=70, opacity=0.01)  # invisible hit targets for clicks
        .encode(x=x, y=y, tooltip=tooltip)
        .add_params(pick)
    )
    return alt.layer(lines, frontier, rings, dots).properties(height=420).interactive()


def diff_heatmap(a: Image.Image, b: Image.Image, gain: float = 4.0) -> tuple[Image.Image, dict[str, float]]:
    """Per-pixel difference of two equally sized images as a heatmap (black = identical,
    through red and yellow to white = large), amplified by ``gain``; plus summary numbers
    (mean and max absolute difference over RGB, share of pixels differing by more than 8)."""
    if a.size != b.size:
        raise ValueError(f"images differ in size: {a.size} vs {b.size}")
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    d = np.abs(x - y).max(axis=2).astype(np.float32)
    v = np.clip(d * gain / 255.0, 0.0, 1.0)
    r = np.clip(v * 3.0, 0, 1)
    g = np.clip(v * 3.0 - 1.0, 0, 1)
    bl = np.clip(v * 3.0 - 2.0, 0, 1)
    img = Image.fromarray((np.stack([r, g, bl], axis=-1) * 255).astype(np.uint8), "RGB")
    stats = {
        "mean_abs": round(float(np.abs(x - y).mean()), 3),
        "max_abs": int(d.max()) if d.size else 0,
        "share_over_8": round(float((d > 8).mean()), 4) if d.size else 0.0,
    }
    return img, stats


def study_chart(curves: pd.DataFrame, metric: str = "ssimulacra2") -> alt.Chart:
    """A study's rate–distortion curves: mean bits per pixel (x) against the mean ``metric`` (y)
    over the images, one line per encoder, qualities in tooltips. ``curves`` is
    ``pipeline.lab.study_curves_frame`` output."""
    y_field = f"{metric}_mean"
    data = curves.dropna(subset=["bpp_mean", y_field])
    return (
        alt.Chart(data)
        .mark_line(point=True, strokeWidth=1.5)
        .encode(
            x=alt.X("bpp_mean:Q", title="Bits per pixel (mean over images)", scale=alt.Scale(zero=False)),
            y=alt.Y(f"{y_field}:Q", title=f"{AXIS_TITLES[metric]}, mean", scale=alt.Scale(zero=False)),
            color=alt.Color("encoder:N", title="Encoder"),
            order=alt.Order("quality:Q"),
            tooltip=[alt.Tooltip("encoder:N"), alt.Tooltip("quality:Q"), alt.Tooltip("n:Q", title="images"),
                     alt.Tooltip("bpp_mean:Q", format=".3f"), alt.Tooltip(f"{y_field}:Q", format=".3f"),
                     alt.Tooltip("encode_ms_median:Q", title="median encode ms", format=".0f")],
        )
        .properties(height=380)
        .interactive()
    )
