"""Reusable result widgets: the comparison views (side by side, wipe, 1:1 zoom) and the facts panel.

The Compare page (issue 6) can reuse ``render_comparison`` for any two encodings of an image.
User-provided text only reaches the page through ``st.text``/``st.code``/dataframes or, where a
markdown label is unavoidable, through ``md_escape``; nothing is rendered as HTML.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from imagepipe.errors import ImagePipeError
from pages.ui import imaging
from pipeline.dashboard_backend import BackendInfo, backend_info

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:~$=\"'])")
_SAFE_CODE = re.compile(r"[^a-z0-9_]")


def md_escape(text: str) -> str:
    """Backslash-escape markdown punctuation so user text shows literally in a markdown label."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def safe_code(code: str) -> str:
    """An error code reduced to ``[a-z0-9_]`` (codes are identifiers; anything else is dropped)."""
    return _SAFE_CODE.sub("", (code or "").lower()) or "unknown_error"


def human_bytes(n: float | None) -> str:
    """``123456`` -> ``"120.6 KiB"``."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def backend_or_stop() -> BackendInfo:
    """The backend, or an error box and the end of this run when it cannot be had (e.g. the
    embedded stack failed to start)."""
    try:
        return backend_info()
    except Exception as exc:  # any start-up failure must reach the user, not a blank page
        st.error(
            f"The backend is not available ({type(exc).__name__}). See the message below and the server log."
        )
        st.code(str(exc) or repr(exc), language=None)
        st.stop()
        raise  # st.stop() raises; this keeps type checkers and readers certain


def show_api_error(exc: ImagePipeError, what: str) -> None:
    """A typed API error as an error box: code (identifier) and message (escaped)."""
    st.error(f"{what}: **{safe_code(exc.code)}** — {md_escape(exc.message)}", icon=":material/error:")


# --- comparison ----------------------------------------------------------------------------


PAIRS = "_pairs"


def comparison_pair(key: str, original: bytes, output: bytes) -> imaging.Pair:
    """Decode once per result and keep it in the session (the sliders recompose from it)."""
    cache: dict[str, imaging.Pair] = st.session_state.setdefault(PAIRS, {})
    if key not in cache:
        cache[key] = imaging.make_pair(original, output)
    return cache[key]


def forget_comparisons(prefix: str, keep: str) -> None:
    """Drop the session's decoded pairs whose key starts with ``prefix``, except ``keep``."""
    cache: dict[str, imaging.Pair] = st.session_state.get(PAIRS, {})
    for key in [k for k in cache if k.startswith(prefix) and k != keep]:
        del cache[key]


def render_comparison(
    key: str, original: bytes, output: bytes, labels: tuple[str, str] = ("Original", "Output")
) -> None:
    """Side by side, wipe slider and 1:1 zoom for one original/output pair."""
    try:
        pair = comparison_pair(key, original, output)
    except imaging.PreviewError as exc:
        st.warning(f"No preview: {md_escape(str(exc))}")
        return
    if pair.alpha:
        st.caption("Transparent areas are shown on a checkerboard.")
    side, wipe_tab, zoom_tab = st.tabs(["Side by side", "Wipe", "Zoom 1:1"])
    with side:
        left, right = st.columns(2)
        left.image(
            imaging.to_png(imaging.fit_within(imaging.on_checkerboard(pair.before), 900)),
            caption=f"{labels[0]} (resized to the output's size)",
            width="stretch",
        )
        right.image(
            imaging.to_png(imaging.fit_within(imaging.on_checkerboard(pair.after), 900)),
            caption=labels[1],
            width="stretch",
        )
    with wipe_tab:
        pct = st.slider(
            "Wipe position: original on the left, output on the right",
            0,
            100,
            50,
            key=f"wipe-{key}",
            format="%d%%",
        )
        st.image(
            imaging.to_png(imaging.wipe(pair, pct / 100)),
            width="stretch",
            caption=f"← {labels[0]} | {labels[1]} →",
        )
    with zoom_tab:
        _zoom(key, pair, labels)


def _zoom(key: str, pair: imaging.Pair, labels: tuple[str, str]) -> None:
    """Pick a region (overview + sliders), then the same pixels of both images, magnified."""
    overview, controls = st.columns([2, 3])
    with controls:
        c1, c2 = st.columns(2)
        cx = c1.slider("Region x", 0, 100, 50, key=f"zx-{key}", format="%d%%")
        cy = c2.slider("Region y", 0, 100, 50, key=f"zy-{key}", format="%d%%")
        side = c1.selectbox("Region size (px)", [32, 64, 128, 256], index=1, key=f"zs-{key}")
        factor = c2.selectbox(
            "Magnify",
            [1, 2, 3, 4],
            index=2,
            key=f"zf-{key}",
            format_func=lambda f: "1:1" if f == 1 else f"{f}×",
        )
    box = imaging.crop_box(pair.after.size, cx / 100, cy / 100, side)
    overview.image(
        imaging.to_png(imaging.mark_region(pair.after, box, max_side=320)),
        width="stretch",
        caption=f"Region {box[0]}–{box[2]} × {box[1]}–{box[3]} of {pair.after.width}×{pair.after.height}",
    )
    before, after = st.columns(2)
    before.image(imaging.to_png(imaging.zoom(pair.before, box, factor)), caption=labels[0])
    after.image(imaging.to_png(imaging.zoom(pair.after, box, factor)), caption=labels[1])
    st.caption(
        "Nearest-neighbour magnification keeps pixels square; a crop wider than its column is "
        "scaled down by the browser, so pick a smaller region or factor on narrow screens."
    )


# --- facts ------------------------------------------------------------------------------------


def job_facts(job: dict[str, Any], original_size: int | None = None) -> dict[str, Any]:
    """The numbers the facts panel shows, from a job's ``result`` (and ``facts`` when present)."""
    result = job.get("result") or {}
    facts = job.get("facts") or {}
    out_bytes = result.get("bytes") or (facts.get("output") or {}).get("bytes")
    in_bytes = result.get("original_bytes") or (facts.get("input") or {}).get("bytes") or original_size
    width = result.get("width") or (facts.get("output") or {}).get("width")
    height = result.get("height") or (facts.get("output") or {}).get("height")
    ratio = result.get("compression_ratio") or facts.get("compression_ratio")
    if ratio is None and in_bytes and out_bytes:
        ratio = in_bytes / out_bytes
    bpp = facts.get("bits_per_pixel")
    if bpp is None and out_bytes and width and height:
        bpp = out_bytes * 8 / (width * height)
    metrics = facts.get("metrics") or {}
    inp = facts.get("input") or {}
    return {
        "format": result.get("format") or (facts.get("output") or {}).get("format"),
        "width": width,
        "height": height,
        "input_format": inp.get("format"),
        "input_width": inp.get("width"),
        "input_height": inp.get("height"),
        "bytes_before": in_bytes,
        "bytes_after": out_bytes,
        "ratio": ratio,
        "saved_pct": (1 - out_bytes / in_bytes) * 100 if in_bytes and out_bytes else None,
        "bpp": bpp,
        "ssim": result.get("ssim", metrics.get("ssim")),
        "psnr": result.get("psnr", metrics.get("psnr")),
        "timings_ms": result.get("timings_ms") or facts.get("timings_ms") or {},
        "chosen": (facts.get("search") or {}).get("chosen"),
    }


def describe_choice(chosen: dict[str, Any] | None) -> str:
    """What an auto-quality search settled on, e.g. ``auto: jpeg:mozjpeg q77, 4:2:0, table 2``."""
    if not chosen:
        return ""
    parts = [f"{chosen.get('encoder') or chosen.get('format') or ''} q{chosen.get('quality')}".strip()]
    if chosen.get("subsampling"):
        parts.append(str(chosen["subsampling"]))
    if chosen.get("quant_table") is not None:
        parts.append(f"table {chosen['quant_table']}")
    return "auto: " + ", ".join(parts)


def _fmt(value: Any, spec: str, none: str = "–") -> str:
    if value is None:
        return none
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


#: the processor's steps in the order they happen (engine stages in the middle)
TIMING_ORDER = ("queue_wait", "download", "decode", "transform", "encode", "metrics", "upload", "record")


def render_facts(facts: dict[str, Any]) -> None:
    """Bytes before/after, ratio, % saved, bits per pixel, SSIM/PSNR and per-stage timings."""
    saved = facts["saved_pct"]
    psnr = facts["psnr"]
    psnr_text = "∞" if psnr is not None and float(psnr) > 1e6 else _fmt(psnr, ".1f") + " dB"
    timings = {k: float(v) for k, v in (facts["timings_ms"] or {}).items() if v is not None}
    r1 = st.columns(3)
    r1[0].metric("Before", human_bytes(facts["bytes_before"]))
    r1[1].metric(
        "After",
        human_bytes(facts["bytes_after"]),
        delta=None if saved is None else f"{-saved:.1f}%",
        delta_color="inverse",
    )
    r1[2].metric("Saved", _fmt(saved, ".1f") + "%" if saved is not None else "–")
    r2 = st.columns(3)
    r2[0].metric(
        "Ratio",
        _fmt(facts["ratio"], ".2f") + "×" if facts["ratio"] else "–",
        help="input bytes / output bytes",
    )
    r2[1].metric("Bits per pixel", _fmt(facts["bpp"], ".3f"), help="output bits / output pixels")
    r2[2].metric("SSIM", _fmt(facts["ssim"], ".4f"), help="vs the original resized to the output size")
    r3 = st.columns(3)
    r3[0].metric("PSNR", psnr_text)
    r3[1].metric(
        "Engine",
        _fmt(timings.get("total"), ".0f") + " ms" if "total" in timings else "–",
        help="decode + transform + encode + metrics",
    )
    r3[2].metric(
        "Processor",
        _fmt(timings.get("service_total"), ".0f") + " ms" if "service_total" in timings else "–",
        help="the whole job: S3 read, engine, S3 write",
    )
    dims_in = (
        f"{facts['input_width']}×{facts['input_height']} {facts['input_format'] or ''}"
        if facts["input_width"]
        else ""
    )
    dims_out = f"{facts['width']}×{facts['height']} {facts['format'] or ''}"
    choice = describe_choice(facts.get("chosen"))
    st.caption(" · ".join(p for p in (f"{dims_in} → {dims_out}".strip(" →"), choice) if p))
    rows = [{"stage": k, "ms": round(timings[k], 1)} for k in TIMING_ORDER if k in timings]
    rows += [
        {"stage": k, "ms": round(v, 1)}
        for k, v in timings.items()
        if k not in TIMING_ORDER and k not in ("total", "service_total")
    ]
    if rows:
        top = max(timings.get("service_total", 0.0), max(r["ms"] for r in rows)) or 1.0
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",
            column_config={
                "stage": st.column_config.TextColumn("stage", width="small"),
                "ms": st.column_config.ProgressColumn(
                    "time (ms)", format="%.1f", min_value=0.0, max_value=top
                ),
            },
        )
