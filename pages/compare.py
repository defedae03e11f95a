"""Compare page (the compression lab): sweep one image over formats × qualities, plot the
rate–distortion curves with the Pareto frontier, compare any two settings, get recommendations,
run a corpus study (many images × encoders, aggregated), and run a batch report of presets over
several images. Backend only via ``pipeline.client``."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

import pages  # noqa: F401  (first: sys.path + router guard, see pages/__init__.py)
from imagepipe.errors import ImagePipeError
from pages.ui import imaging
from pages.ui.compare_chart import diff_heatmap, rd_chart, study_chart
from pages.ui.widgets import (
    backend_or_stop,
    comparison_pair,
    forget_comparisons,
    human_bytes,
    md_escape,
    render_comparison,
    safe_code,
)
from pipeline import lab
from pipeline.dashboard_backend import get_client
from pipeline.presets import get_preset, preset_names

K = "compare."
SWEEP_ID = K + "sweep_id"
SWEEP = K + "sweep"
IMAGE_ID = K + "image_id"
BYTES = K + "bytes"  # label -> variant bytes (and "original")
REPORT = K + "report"
STUDY_ID = K + "study_id"
STUDY = K + "study"
STUDY_ENCODERS = ["jpeg", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl"]
FORMATS = ["jpeg", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl", "png"]
OPTIONS = {
    "none": [],
    "webp.method": [0, 2, 4, 6],
    "jpeg.subsampling": ["4:4:4", "4:2:2", "4:2:0"],
    "jpeg.progressive": [True, False],
    "avif.speed": [2, 4, 6, 8],
    "jxl.effort": [3, 5, 7, 9],
}
ORIGINAL = "Original (resized like the sweep)"


def _error(exc: ImagePipeError) -> None:
    st.error(f"**{safe_code(exc.code)}** — {md_escape(exc.message)}", icon=":material/error:")


def _uploaded_images(client: Any) -> list[dict[str, Any]]:
    try:
        items = client.list_images(limit=100)["items"]
    except ImagePipeError as exc:
        _error(exc)
        return []
    return [i for i in items if i.get("status") == "uploaded"]


def _image_label(image: dict[str, Any]) -> str:
    size = human_bytes(image.get("bytes")) if image.get("bytes") else ""
    return f"{image.get('filename') or 'image'} · {size} · {image['image_id'][:8]}"


def _pick_image(client: Any, images: list[dict[str, Any]]) -> str | None:
    """History selectbox (over ``images``) or an upload; the chosen image id."""
    source = st.radio("Image", ["From history", "Upload"], horizontal=True, key=K + "source")
    if source == "Upload":
        f = st.file_uploader("Image to sweep", key=K + "file")
        if f is not None and st.button("Upload", key=K + "upload", icon=":material/upload:"):
            try:
                up = client.upload(f.getvalue(), f.name, f.type or None)
            except ImagePipeError as exc:
                _error(exc)
                return None
            st.session_state[IMAGE_ID] = up["image_id"]
            st.session_state[K + "uploaded_name"] = f.name
        if st.session_state.get(IMAGE_ID) and st.session_state.get(K + "uploaded_name"):
            st.caption(f"Uploaded: {md_escape(st.session_state[K + 'uploaded_name'])}")
        return st.session_state.get(IMAGE_ID)
    if not images:
        st.info("No uploaded images yet: process one on the Process page or upload here.")
        return None
    by_id = {i["image_id"]: i for i in images}
    chosen = st.selectbox(
        "Uploaded images (newest first)",
        list(by_id),
        key=K + "history",
        format_func=lambda i: _image_label(by_id[i]),
    )
    st.session_state[IMAGE_ID] = chosen
    return chosen


def _grid() -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The grid and resize chosen in the form."""
    c1, c2 = st.columns(2)
    formats = c1.multiselect("Formats", FORMATS, default=["jpeg", "webp", "avif"], key=K + "formats")
    lo, hi = c2.slider("Quality range", 1, 100, (30, 95), key=K + "qrange")
    steps = c2.slider("Qualities in the range", 2, 20, 6, key=K + "qsteps")
    qualities = sorted({round(lo + (hi - lo) * i / (steps - 1)) for i in range(steps)})
    c3, c4 = st.columns(2)
    opt = c3.selectbox("Vary one codec option", list(OPTIONS), key=K + "option")
    grid: dict[str, Any] = {"formats": formats, "qualities": qualities}
    if opt != "none":
        values = c3.multiselect("Option values", OPTIONS[opt], default=OPTIONS[opt][:2], key=K + "optvals")
        if values:
            grid["option"] = {"name": opt, "values": values}
    width = c4.number_input("Resize to width (0 = keep)", 0, 8000, 1200, step=100, key=K + "width")
    if c4.checkbox("Also measure SSIMULACRA2 (slower)", key=K + "ssimulacra2",
                   help="SSIM and PSNR are always measured; SSIMULACRA2 costs ~20–40× more per point"):
        grid["metrics"] = ["ssim", "psnr", "ssimulacra2"]
    st.caption(f"Qualities: {', '.join(map(str, qualities))}")
    return grid, ({"width": int(width)} if width else None)


def _poll(id_key: str, state_key: str, fetch: Any, describe: Any) -> None:
    """Poll a running sweep or study (``fetch(id)``), keep it in ``state_key``, show its progress
    bar (``describe(run, progress)`` is the text) and rerun the page once it has ended."""
    run_id = st.session_state.get(id_key)
    if not run_id:
        return
    try:
        run = fetch(run_id)
    except ImagePipeError as exc:
        _error(exc)
        return
    st.session_state[state_key] = run
    prog = run.get("progress") or {}
    st.progress(float(prog.get("fraction") or 0.0), text=describe(run, prog))
    if run["status"] in ("succeeded", "failed"):
        st.rerun(scope="app")


def _progress() -> None:
    """Polls the running sweep; reruns the page once it has finished."""
    _poll(SWEEP_ID, SWEEP, get_client().get_sweep, lambda run, prog: (
        f"Sweep {run['status']}: {prog.get('parts_done', 0)}/{prog.get('parts_total', 0)} parts, "
        f"{prog.get('points', 0)}/{prog.get('cells_total', 0)} points"))


def _bytes_of(client: Any, sweep: dict[str, Any], name: str) -> bytes:
    """A variant's (or the original's) bytes, downloaded once per session."""
    cache: dict[str, bytes] = st.session_state.setdefault(BYTES, {})
    key = f"{sweep['sweep_id']}/{name}"
    if key not in cache:
        if name == ORIGINAL:
            url = client.get_image(sweep["image_id"])["download_url"]
        else:
            fresh = client.get_sweep(sweep["sweep_id"])  # presigned URLs expire: always a fresh one
            url = next(p["download_url"] for p in fresh["points"] if p["label"] == name)
        cache[key] = client.download(url)
    return cache[key]


def _downloads(sweep: dict[str, Any], items: list[tuple[str, bytes, dict[str, Any] | None]]) -> None:
    """The real encoded files of A and B. Previews above are decoded and shown as PNG, so JPEG XL
    and HEIC show in any browser; these buttons hand out the actual bytes."""
    cols = st.columns(len(items))
    for col, (name, data, point) in zip(cols, items, strict=True):
        if point is None:
            continue  # the original is in History
        col.download_button(
            f"Download {point['label']}.{point['extension']}", data,
            file_name=f"{point['label']}.{point['extension']}", mime=point["content_type"],
            key=f"{K}dl-{sweep['sweep_id']}-{name}", on_click="ignore", icon=":material/download:",
        )
    if any(p is not None and p.get("extension") in ("jxl", "heic", "heif") for _n, _d, p in items):
        st.caption("JPEG XL is shown converted to PNG (not every browser displays it); the download is the "
                   "real file.")


def _compare_two(client: Any, sweep: dict[str, Any], points: list[dict[str, Any]]) -> None:
    by_label = {p["label"]: p for p in points}
    settings = {p["label"]: lab.setting_label(p) for p in points}
    names = [ORIGINAL, *by_label]
    c1, c2 = st.columns(2)
    rec = st.session_state.get(K + "cheapest")
    # defaults (and stale values from an earlier sweep) are set before the widgets exist
    if st.session_state.get(K + "a") not in names:
        st.session_state[K + "a"] = ORIGINAL
    if st.session_state.get(K + "b") not in names:
        st.session_state[K + "b"] = rec if rec in names else names[min(1, len(names) - 1)]
    a = c1.selectbox("A", names, key=K + "a", format_func=lambda n: settings.get(n, n))
    b = c2.selectbox("B (or click a point in the chart)", names, key=K + "b",
                     format_func=lambda n: settings.get(n, n))
    pa, pb = by_label.get(a), by_label.get(b)
    m1, m2, m3 = st.columns(3)
    if pa is not None and pb is not None:
        d = lab.point_delta(pa, pb)
        m1.metric("B size", human_bytes(pb["bytes"]), f"{d['bytes_pct']:+.1f}% vs A", delta_color="inverse")
        m2.metric("B SSIM", f"{pb['ssim']:.5f}", f"{d['ssim']:+.5f} vs A")
        m3.metric("B PSNR", f"{pb['psnr']:.2f} dB", f"{d['psnr']:+.2f} vs A")
    else:
        p = pb or pa
        if p is not None:
            m1.metric("Size", human_bytes(p["bytes"]))
            m2.metric("SSIM vs original", f"{p['ssim']:.5f}")
            m3.metric("PSNR vs original", f"{p['psnr']:.2f} dB")
    if a == b:
        st.info("Pick two different settings to compare.")
        return
    try:
        da, db = _bytes_of(client, sweep, a), _bytes_of(client, sweep, b)
    except (ImagePipeError, StopIteration) as exc:
        st.warning(f"Could not fetch the images: {md_escape(str(exc))}")
        return
    pair_key = f"{K}{sweep['sweep_id']}-{a}-{b}"
    forget_comparisons(K, keep=pair_key)  # only the pair on screen stays decoded in the session
    render_comparison(
        pair_key,
        da,
        db,
        labels=(settings.get(a, "Original"), settings.get(b, "Original")),
    )
    _downloads(sweep, [(n, d, by_label.get(n)) for n, d in ((a, da), (b, db))])
    with st.expander("Difference heatmap", expanded=False):
        gain = st.slider("Amplify differences", 1, 16, 4, key=K + "gain")
        try:
            pair = comparison_pair(pair_key, da, db)  # decoded once, shared with the views above
            heat, stats = diff_heatmap(pair.before, pair.after, gain=float(gain))
        except (imaging.PreviewError, ValueError) as exc:
            st.warning(md_escape(str(exc)))
            return
        st.image(
            imaging.to_png(imaging.fit_within(heat, 1200)),
            width="stretch",
            caption="|A − B| per pixel (max over RGB): black = identical, white = large",
        )
        st.caption(
            f"Mean |A−B| {stats['mean_abs']:.2f} · max {stats['max_abs']} · "
            f"{stats['share_over_8']:.1%} of pixels differ by more than 8"
        )


def _results(client: Any, sweep: dict[str, Any]) -> None:
    points = sweep.get("points") or []
    for err in sweep.get("errors") or []:
        st.error(
            f"Part {err.get('part')}: **{safe_code(err.get('code', ''))}** — "
            f"{md_escape(err.get('message', ''))}"
        )
    skipped = sweep.get("skipped") or []  # cells a part had no time/memory for (core/budget.py)
    if skipped:
        st.warning(
            f"{len(skipped)} cell(s) skipped to fit the processor's limits: "
            + "; ".join(f"**{md_escape(str(c.get('label', '')))}** — {md_escape(str(c.get('skipped', '')))}"
                        for c in skipped[:5])
            + (" …" if len(skipped) > 5 else ""),
            icon=":material/timer:",
        )
    if not points:
        return
    c1, c2 = st.columns(2)
    size = c1.radio("Size axis", ["bytes", "bpp"], horizontal=True, key=K + "size")
    axes = [m for m in lab.METRICS if any(p.get(m) is not None for p in points)]
    if st.session_state.get(K + "metric") not in axes:
        st.session_state[K + "metric"] = "ssim"  # e.g. ssimulacra2 picked for an earlier sweep
    metric = c2.radio("Quality axis", axes, horizontal=True, key=K + "metric")
    df = lab.points_frame(points, metric)
    event = st.altair_chart(rd_chart(df, size, metric), width="stretch", on_select="rerun",
                            selection_mode="pick", key=K + "chart")
    picked = [str(p.get("label")) for p in ((event or {}).get("selection") or {}).get("pick") or []]
    if picked and picked[-1] != st.session_state.get(K + "picked"):
        st.session_state[K + "picked"] = picked[-1]
        st.session_state[K + "b"] = picked[-1]  # the clicked point becomes B (before B's widget exists)
    st.caption(
        f"{len(points)} points at {points[0]['width']}×{points[0]['height']} · dashed black line = "
        "Pareto frontier (no other setting is both smaller and better). SSIM: luma, 8×8 windows, "
        "stride 4, against the resized original; PSNR over RGB; SSIMULACRA2 (when measured): "
        "libjxl's perceptual metric, 100 = identical, ~90 visually lossless, ~70 high quality."
    )

    st.subheader("Recommend")
    r1, r2 = st.columns([1, 3])
    default = {"ssim": 0.95, "psnr": 38.0, "ssimulacra2": 70.0}[metric]
    target = r1.number_input(
        f"Minimum {metric.upper()}",
        value=default,
        step={"ssim": 0.005, "psnr": 0.5, "ssimulacra2": 1.0}[metric],
        format="%.4f" if metric == "ssim" else "%.1f",
        key=K + f"target_{metric}",
    )
    rec = lab.recommend(points, metric, float(target))
    r2.dataframe(rec.drop(columns=["label"]), hide_index=True, width="stretch")
    if not rec.empty and bool(rec.loc[0, "meets"]):
        st.session_state[K + "cheapest"] = rec.loc[0, "label"]
        st.success(
            f"Cheapest setting meeting {metric.upper()} ≥ {target:g}: "
            f"**{md_escape(rec.loc[0, 'setting'])}** ({human_bytes(rec.loc[0, 'bytes'])})"
        )

    st.subheader("Compare two settings")
    _compare_two(client, sweep, points)

    with st.expander("All points"):
        st.dataframe(df.drop(columns=["label"]), hide_index=True, width="stretch")
        st.download_button(
            "Points as CSV",
            df.to_csv(index=False),
            file_name=f"sweep-{sweep['sweep_id']}.csv",
            mime="text/csv",
            key=K + "points_csv",
            on_click="ignore",
        )


def _batch_report(client: Any, images: list[dict[str, Any]]) -> None:
    st.subheader("Batch report")
    st.caption("Several presets over several images: savings and scores per image and in aggregate.")
    by_id = {i["image_id"]: i for i in images}
    chosen = st.multiselect(
        "Images",
        list(by_id),
        default=list(by_id)[:3],
        key=K + "rep_images",
        format_func=lambda i: _image_label(by_id[i]),
    )
    names = st.multiselect("Presets", preset_names(), default=preset_names()[:2], key=K + "rep_presets")
    if st.button(
        "Run report", key=K + "rep_go", disabled=not chosen or not names, icon=":material/summarize:"
    ):
        bar = st.progress(0.0, text="Running jobs…")
        try:
            rows = lab.batch_report(
                client,
                [by_id[i] for i in chosen],
                {n: get_preset(n) for n in names},
                on_progress=lambda i, n: bar.progress(i / n, text=f"{i}/{n} jobs finished"),
            )
        except ImagePipeError as exc:
            _error(exc)
            return
        st.session_state[REPORT] = rows
    rows = st.session_state.get(REPORT)
    if not rows:
        return
    st.markdown("**Aggregate per preset**")
    st.dataframe(lab.aggregate(rows), hide_index=True, width="stretch")
    st.markdown("**Per image**")
    st.dataframe(pd.DataFrame(rows, columns=lab.REPORT_COLUMNS), hide_index=True, width="stretch")
    st.download_button(
        "Report as CSV",
        lab.to_csv(rows),
        file_name="imagepipe-report.csv",
        mime="text/csv",
        key=K + "rep_csv",
        on_click="ignore",
        icon=":material/download:",
    )


def _grid_label(s: dict[str, Any]) -> str:
    g = s.get("grid") or {}
    q = g.get("qualities") or []
    opt = f" × {g['option']['name']}" if g.get("option") else ""
    size = f" @ {s['resize'].get('width')} px" if s.get("resize") else ""
    return (f"{s.get('created_at', '')[:19].replace('T', ' ')} · {'/'.join(g.get('formats') or [])} × "
            f"{len(q)} qualities{opt}{size} · {s.get('status')}")


def _previous_sweeps(client: Any, image_id: str) -> None:
    """Reopen an earlier sweep of this image (newest first, from ``GET /sweeps``)."""
    try:
        items = client.list_sweeps(limit=100, image_id=image_id)["items"]
    except ImagePipeError as exc:
        _error(exc)
        return
    if not items:
        return
    by_id = {s["sweep_id"]: s for s in items}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    chosen = c1.selectbox("Earlier sweeps of this image", list(by_id), key=K + "previous",
                          format_func=lambda i: _grid_label(by_id[i]))
    if c2.button("Open", key=K + "open", icon=":material/history:") and chosen:
        sweep = {"sweep_id": chosen, "status": by_id[chosen].get("status")}
        if sweep["status"] in ("succeeded", "failed"):
            try:
                sweep = client.get_sweep(chosen)
            except ImagePipeError as exc:
                _error(exc)
                return
        st.session_state[SWEEP_ID] = chosen
        st.session_state[SWEEP] = sweep
        st.session_state.pop(K + "cheapest", None)


def _study_progress() -> None:
    """Polls the running study; reruns the page once it has finished."""
    _poll(STUDY_ID, STUDY, get_client().get_study, lambda run, prog: (
        f"Study {run['status']}: {prog.get('images_done', 0)}/{prog.get('images_total', 0)} images, "
        f"{prog.get('parts_done', 0)}/{prog.get('parts_total', 0)} parts"))


def _study_results(study: dict[str, Any]) -> None:
    prog = study.get("progress") or {}
    for im in study.get("images") or []:
        if im.get("status") in ("failed", "missing"):
            codes = ", ".join(sorted({str(e.get("code")) for e in im.get("errors") or []})) or im["status"]
            st.warning(f"{md_escape(str(im.get('filename') or im['image_id']))}: {safe_code(codes)} "
                       "(left out of the aggregate)")
    metric = st.radio("Score", ["ssimulacra2", "ssim"], horizontal=True, key=K + "study_metric",
                      format_func=lambda m: {"ssimulacra2": "SSIMULACRA2", "ssim": "SSIM"}[m])
    curves = lab.study_curves_frame(study)
    if curves.empty:
        st.info("No image finished successfully: nothing to aggregate.")
        return
    st.altair_chart(study_chart(curves, metric), width="stretch")
    st.markdown(f"**Bytes saved against {md_escape(study['baseline'])} at equal {metric.upper()}** "
                f"over {prog.get('images_aggregated', 0)} images (bootstrap 95% interval over the images)")
    st.dataframe(
        lab.study_savings_frame(study, metric), hide_index=True, width="stretch",
        column_config={"saved_pct": st.column_config.NumberColumn("saved %", format="%.1f"),
                       "ci_low": st.column_config.NumberColumn("95% CI low", format="%.1f"),
                       "ci_high": st.column_config.NumberColumn("95% CI high", format="%.1f"),
                       "bytes_ratio": st.column_config.NumberColumn("bytes ratio", format="%.3f"),
                       "encode_ms_median": st.column_config.NumberColumn("median encode ms", format="%.0f")},
    )
    c1, c2 = st.columns(2)
    c1.download_button("Points as CSV", lab.study_points_csv(study),
                       file_name=f"study-{study['study_id']}.csv", mime="text/csv", key=K + "study_csv",
                       on_click="ignore", icon=":material/download:")
    c2.download_button("Study as JSON (with codec versions)", lab.study_json(study),
                       file_name=f"study-{study['study_id']}.json", mime="application/json",
                       key=K + "study_json", on_click="ignore", icon=":material/download:")


def _study(client: Any, images: list[dict[str, Any]]) -> None:
    """Corpus study: several images × encoders × qualities, aggregated per encoder."""
    st.subheader("Study: encoders over a corpus")
    st.caption("One sweep per image (fanned out like any sweep), SSIMULACRA2 measured, aggregated into "
               "rate–distortion curves and bytes saved against a baseline at equal score.")
    if not images:  # none uploaded (or the API is unreachable, already reported above)
        st.info("Upload images (Process page) to run a study.")
        return
    by_id = {i["image_id"]: i for i in images}
    chosen = st.multiselect("Images", list(by_id), key=K + "study_images",
                            format_func=lambda i: _image_label(by_id[i]))
    c1, c2, c3 = st.columns(3)
    encoders = c1.multiselect("Encoders", STUDY_ENCODERS, default=STUDY_ENCODERS, key=K + "study_encoders")
    baseline = c2.selectbox("Baseline", encoders or ["jpeg"], key=K + "study_baseline")
    width = c3.number_input("Resize width", 64, 4000, 1200, step=100, key=K + "study_width")
    lo, hi = st.slider("Quality range", 10, 100, (40, 90), key=K + "study_q")
    n_q = st.slider("Qualities in the range", 2, 10, 5, key=K + "study_nq")
    qualities = sorted({round(lo + (hi - lo) * i / max(1, n_q - 1)) for i in range(n_q)})
    study: dict[str, Any] | None = st.session_state.get(STUDY)
    running = study is not None and study.get("status") not in ("succeeded", "failed")
    if st.button(f"Run study ({len(chosen)} images × {len(encoders)} encoders × {len(qualities)} qualities)",
                 key=K + "study_go", icon=":material/science:",
                 disabled=not chosen or not encoders or running):
        grid = {"formats": encoders, "qualities": qualities, "metrics": ["ssimulacra2"]}
        try:
            started = client.study(chosen, grid, {"width": int(width), "height": int(width), "fit": "inside"},
                                   baseline=baseline)
        except ImagePipeError as exc:
            _error(exc)
        else:
            st.session_state[STUDY_ID] = started["study_id"]
            st.session_state[STUDY] = study = {"study_id": started["study_id"], "status": "queued"}
            running = True
    try:
        earlier = client.list_studies(limit=20)["items"]
    except ImagePipeError as exc:
        _error(exc)
        earlier = []
    if earlier and not running:
        ids = {s["study_id"]: s for s in earlier}
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        pick = c1.selectbox("Earlier studies", list(ids), key=K + "study_prev",
                            format_func=lambda i: f"{ids[i].get('created_at', '')[:19].replace('T', ' ')} · "
                            f"{len(ids[i].get('image_ids') or [])} images · "
                            f"{'/'.join((ids[i].get('grid') or {}).get('formats') or [])}")
        if c2.button("Open", key=K + "study_open", icon=":material/history:") and pick:
            try:
                st.session_state[STUDY] = study = client.get_study(pick)
                st.session_state[STUDY_ID] = pick
            except ImagePipeError as exc:
                _error(exc)
            running = study is not None and study.get("status") not in ("succeeded", "failed")
    if study is None:
        return
    if running:
        st.fragment(_study_progress, run_every=2.0)()
    else:
        _study_results(study)


def page() -> None:
    """The Compare page."""
    st.title("Compare")
    st.caption(
        "The compression lab: one image × formats × qualities, measured. Decoded and resized once, "
        "encoded per setting on the Lambda workers (one invocation per format)."
    )
    backend_or_stop()  # the embedded stack starts here on first use; a failure is shown, not raised
    client = get_client()
    images = _uploaded_images(client)  # once per run: the picker and the batch report share it
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.subheader("1. Image")
        image_id = _pick_image(client, images)
    with right:
        st.subheader("2. Grid")
        grid, resize = _grid()
    if image_id:
        _previous_sweeps(client, str(image_id))
    sweep: dict[str, Any] | None = st.session_state.get(SWEEP)
    running = sweep is not None and sweep.get("status") not in ("succeeded", "failed")
    n_cells = len(grid["qualities"]) * len(grid["formats"])
    if st.button(
        f"Run sweep (≈{n_cells} settings)",
        type="primary",
        key=K + "go",
        icon=":material/play_arrow:",
        disabled=not image_id or not grid["formats"] or running,
    ):
        try:
            started = client.sweep(str(image_id), grid, resize)
        except ImagePipeError as exc:
            _error(exc)
        else:
            st.session_state[SWEEP_ID] = started["sweep_id"]
            st.session_state[SWEEP] = {"sweep_id": started["sweep_id"], "status": "queued"}
            st.session_state.pop(K + "cheapest", None)
            sweep = st.session_state[SWEEP]
            running = True
    if sweep is not None:
        st.divider()
        st.subheader("3. Rate–distortion")
        if running:
            st.fragment(_progress, run_every=1.0)()
            if st.button("Stop waiting", key=K + "forget", help="Forget this sweep here (it keeps running on "
                         "the backend) and allow a new one"):
                st.session_state.pop(SWEEP, None)
                st.session_state.pop(SWEEP_ID, None)
                st.rerun()
        else:
            _results(client, sweep)
    st.divider()
    _study(client, images)
    st.divider()
    _batch_report(client, images)


page()
