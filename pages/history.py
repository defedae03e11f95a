"""History & analytics page: figures and charts from ``GET /stats`` (the rollups: exact counts
and sums at any size), the job table paginated server-side, CSV export produced server-side."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import streamlit as st

import pages  # noqa: F401  (first: sys.path + router guard, see pages/__init__.py)
from imagepipe.errors import ImagePipeError
from pages.ui import analytics
from pages.ui.widgets import backend_or_stop, md_escape, show_api_error
from pipeline import cost
from pipeline.dashboard_backend import get_client
from pipeline.presets import preset_hashes

PAGE_SIZE = 50
DEFAULT_DAYS = 30
STATUSES = ["succeeded", "failed", "running", "queued"]
#: the API's ``arrival`` values (``GET /jobs?arrival=``) and how the page names them
ARRIVALS = {"presigned": "presigned upload", "direct": "direct upload (POST /images)", "drop": "bucket drop"}


@st.cache_data(ttl=15, show_spinner="Loading figures…")
def load_stats(api_url: str, generation: int, filters: str) -> dict[str, Any]:
    """``GET /stats`` for the filters (JSON), cached a few seconds per backend; ``generation``
    (bumped by the Process page when a file finishes) makes this session see its own jobs."""
    return get_client().stats(**json.loads(filters))


@st.cache_data(ttl=15, show_spinner="Loading jobs…")
def load_jobs(api_url: str, generation: int, filters: str, cursor: str | None) -> dict[str, Any]:
    """One page of the filtered job list (``GET /jobs`` with the same filters)."""
    return get_client().list_jobs(limit=PAGE_SIZE, cursor=cursor, **json.loads(filters))


@st.cache_data(ttl=15, show_spinner=False)
def load_images(api_url: str, generation: int, cursor: str | None) -> dict[str, Any]:
    """One page of images, newest first."""
    return get_client().list_images(limit=PAGE_SIZE, cursor=cursor)


def _images_table(images: list[dict[str, Any]]) -> pd.DataFrame:
    """The images tab: ``analytics.images_frame`` with how each image arrived."""
    df = analytics.images_frame(images)
    df.insert(2, "arrival", df["image_id"].map({i.get("image_id"): _arrival(i) for i in images}))
    return df


def _arrival(job: dict[str, Any]) -> str:
    """How a job's (or an image's) image arrived, for the tables (records from before
    ``arrival``: presigned)."""
    way = ARRIVALS.get(job.get("arrival") or "presigned", str(job.get("arrival")))
    return f"{way} ({job['drop_rule']})" if job.get("drop_rule") else way


@st.cache_data(show_spinner=False)
def _preset_map() -> dict[str, str]:
    return preset_hashes()


def _date_filter() -> tuple[dt.date, dt.date]:
    today = dt.datetime.now(dt.UTC).date()
    picked = st.date_input(
        "Date range (UTC, creation day)",
        value=(today - dt.timedelta(days=DEFAULT_DAYS - 1), today),
        min_value=today - dt.timedelta(days=3659),
        max_value=today,
        key="hist.dates",
    )
    if isinstance(picked, tuple) and len(picked) == 2:
        return picked[0], picked[1]
    first = picked[0] if isinstance(picked, tuple) and picked else picked
    return (first, first) if isinstance(first, dt.date) else (today, today)


def _filters(dimensions: dict[str, list[str]], start: dt.date, end: dt.date) -> dict[str, Any]:
    c1, c2, c3, c4 = st.columns(4)
    status = c1.multiselect("Status", STATUSES, key="hist.status")
    fmt = c2.multiselect("Output format", dimensions.get("format", []), key="hist.format")
    preset = c3.multiselect("Preset", dimensions.get("preset", []), key="hist.preset")
    ways = [*ARRIVALS, *sorted(set(dimensions.get("arrival", [])) - set(ARRIVALS))]
    arrival = c4.multiselect("Arrived by", ways, key="hist.arrival", format_func=lambda a: ARRIVALS.get(a, a))
    return {"from": start.isoformat(), "to": end.isoformat(), "status": status, "format": fmt,
            "preset": preset, "arrival": arrival}


def _headline(stats: dict[str, Any]) -> None:
    t = stats["totals"]
    ratio = (stats["distributions"].get("compression_ratio") or {}).get("p50")
    m = st.columns(5)
    m[0].metric("Jobs", f"{t['jobs']:,}")
    m[1].metric("Succeeded", f"{t['succeeded']:,}")
    m[2].metric("Failed", f"{t['failed']:,}")
    err = stats["bucket_error"] * 100
    m[3].metric("Median ratio", f"≈{ratio:.2f}×" if ratio else "–",
                help=f"from a log-bucket histogram: within ±{err:.1f}% of the exact median")
    m[4].metric("Bytes saved", f"{t['bytes_saved'] / 1e6:,.2f} MB" if t["succeeded"] else "–")
    st.caption(md_escape(stats.get("quantile_note", "")))


def _jobs_table(info: Any, filters_json: str) -> None:
    cursors: list[str | None] = st.session_state.setdefault("hist.cursors", [None])
    try:
        page = load_jobs(info.api_url, st.session_state.get("data_generation", 0), filters_json, cursors[-1])
    except ImagePipeError as exc:
        show_api_error(exc, "Could not load the jobs")
        return
    df = analytics.jobs_frame(page["items"], [], _preset_map())
    df.insert(2, "arrival", df["job_id"].map({j.get("job_id"): _arrival(j) for j in page["items"]}))
    st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        height=min(420, 35 * (len(df) + 1) + 3),
        column_config={
            "created_at": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "saved_pct": st.column_config.NumberColumn("saved %", format="%.1f"),
            "ratio": st.column_config.NumberColumn("ratio", format="%.2f"),
            "bpp": st.column_config.NumberColumn("bpp", format="%.3f"),
            "ssim": st.column_config.NumberColumn("SSIM", format="%.4f"),
            "psnr": st.column_config.NumberColumn("PSNR dB", format="%.2f"),
            "input_mp": st.column_config.NumberColumn("input MP", format="%.2f"),
        },
    )
    c1, c2, c3 = st.columns([1, 1, 4])
    if c1.button("Previous", icon=":material/chevron_left:", key="hist.prev", disabled=len(cursors) == 1):
        cursors.pop()
        st.rerun()
    if c2.button("Next", icon=":material/chevron_right:", key="hist.next", disabled=not page["next_cursor"]):
        cursors.append(page["next_cursor"])
        st.rerun()
    c3.caption(f"Page {len(cursors)} · {len(df)} job(s) on this page, newest first")


@st.fragment(run_every=1)
def _export_progress(export_id: str) -> None:
    try:
        exp = get_client().get_export(export_id)
    except ImagePipeError as exc:
        show_api_error(exc, "Could not read the export")
        return
    if exp["status"] in ("succeeded", "failed"):
        st.session_state["hist.export_done"] = exp
        st.rerun()
    text = f"Exporting: {exp['rows']:,} of ~{exp['expected_rows']:,} rows"
    st.progress(min(1.0, float(exp["progress"])), text=text)


def _export(filters: dict[str, Any], expected: int) -> None:
    st.markdown("**Export CSV** of every job matching the filters (written server-side into the "
                "destination bucket, then downloaded from a presigned link).")
    if st.button(f"Export CSV ({expected:,} finished jobs)", icon=":material/download:", key="hist.export"):
        try:
            exp = get_client().create_export(**filters)
        except ImagePipeError as exc:
            show_api_error(exc, "Could not start the export")
            return
        st.session_state["hist.export_id"] = exp["export_id"]
        st.session_state.pop("hist.export_done", None)
    done = st.session_state.get("hist.export_done")
    if done is not None and done.get("export_id") == st.session_state.get("hist.export_id"):
        if done["status"] == "succeeded" and done.get("download_url"):
            st.progress(1.0, text=f"Done: {done['rows']:,} rows, {done['bytes'] / 1e6:.2f} MB")
            st.link_button("Download CSV", done["download_url"], icon=":material/download:")
        else:
            st.error(f"The export failed: {md_escape(str(done.get('error')))}")
    elif st.session_state.get("hist.export_id"):
        _export_progress(st.session_state["hist.export_id"])


def _charts(stats: dict[str, Any]) -> None:
    st.subheader("Charts")
    c1, c2 = st.columns(2)
    formats = analytics.format_quantiles_frame(stats)
    if formats.empty:
        c1.info("No succeeded jobs in the current filter.")
    else:
        c1.altair_chart(analytics.chart_ratio_by_format_quantiles(formats), width="stretch")
        ratios = analytics.distribution_frame(stats, "compression_ratio")
        c2.altair_chart(analytics.chart_distribution(ratios, "Distribution of compression ratio",
                                                     "compression ratio (×)"), width="stretch")
        c1.altair_chart(analytics.chart_timings(analytics.stage_quantiles_frame(stats)), width="stretch")
        bpp = analytics.distribution_frame(stats, "bits_per_pixel")
        c2.altair_chart(analytics.chart_distribution(bpp, "Distribution of bits per pixel", "bits per pixel"),
                        width="stretch")
    c1, c2 = st.columns(2)
    c1.altair_chart(analytics.chart_jobs_per_day(analytics.stats_days_frame(stats)), width="stretch")
    errors = analytics.errors_frame(stats)
    if errors.empty:
        c2.info("No failed jobs in the current filter.")
    else:
        c2.altair_chart(analytics.chart_failures_by_code(errors), width="stretch")
    with st.expander("Totals per status × format × preset × way in"):
        st.dataframe(analytics.groups_frame(stats), hide_index=True, width="stretch")


def _cost(stats: dict[str, Any]) -> None:
    st.subheader("Estimated AWS cost per 1,000 images")
    t = stats["totals"]
    if not t.get("timed_jobs"):
        st.info("No succeeded job with timings in the current filter; process some images first.")
        return
    memory = st.select_slider(
        "Processor memory (MB)",
        [512, 1024, 1536, 1769, 1792, 2048, 3008, 4096],
        value=cost.DEFAULT_MEMORY_MB,
        key="hist.memory",
        help="The SAM template's ProcessorMemorySize (default 1792 MB)",
    )
    est = cost.estimate_from_totals(t["timed_jobs"], t["processor_ms"], memory)
    c1, c2 = st.columns([1, 1.4])
    c1.metric(
        "Total per 1,000 images",
        f"${est.total:.4f}",
        help=f"mean processor duration {est.mean_billed_ms:.0f} ms at {memory} MB, from the "
        f"{t['timed_jobs']:,} measured job(s) of the period (the rollups' sums)",
    )
    c1.metric("This period", f"${est.total * t['jobs'] / 1000:.4f}", help=f"{t['jobs']:,} jobs at that rate")
    c1.dataframe(
        pd.DataFrame(est.as_rows()),
        hide_index=True,
        width="stretch",
        column_config={"usd_per_1000_images": st.column_config.NumberColumn("USD / 1,000", format="$%.5f")},
    )
    with c2:
        st.markdown("**Price assumptions** (us-east-1 list prices, `pipeline/cost.py`)")
        st.markdown("\n".join(f"- **{item}**: {text}" for item, text in cost.ASSUMPTIONS))


def page() -> None:
    """The History & analytics page."""
    st.title("History & analytics")
    info = backend_or_stop()
    top = st.columns([4, 1])
    top[0].caption(f"From the rollups and job records behind {md_escape(info.api_url)}.")
    if top[1].button("Refresh", icon=":material/refresh:", key="hist.refresh"):
        load_stats.clear()
        load_jobs.clear()
        load_images.clear()
    generation = st.session_state.get("data_generation", 0)
    start, end = _date_filter()
    try:
        unfiltered = load_stats(info.api_url, generation, json.dumps({"from": start.isoformat(),
                                                                      "to": end.isoformat()}, sort_keys=True))
        filters = _filters(unfiltered.get("dimensions", {}), start, end)
        filters = {k: v for k, v in filters.items() if v}  # the API's own key: no empty filters
        filters_json = json.dumps(filters, sort_keys=True)
        stats = load_stats(info.api_url, generation, filters_json)
    except ImagePipeError as exc:
        show_api_error(exc, "Could not load the history")
        return
    if st.session_state.get("hist.filters_seen") != filters_json:  # new filters: back to page 1
        st.session_state["hist.filters_seen"] = filters_json
        st.session_state["hist.cursors"] = [None]
    _headline(stats)
    jobs_tab, images_tab = st.tabs([f"Jobs ({stats['totals']['jobs']:,} finished)", "Images"])
    with jobs_tab:
        _jobs_table(info, filters_json)
        _export(filters, stats["totals"]["jobs"])
    with images_tab:
        try:
            images = load_images(info.api_url, generation, None)
        except ImagePipeError as exc:
            show_api_error(exc, "Could not load the images")
        else:
            st.caption(f"The newest {PAGE_SIZE} images.")
            st.dataframe(_images_table(images["items"]), hide_index=True, width="stretch")
    _charts(stats)
    _cost(stats)


page()
