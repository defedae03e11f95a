"""History & analytics page: every image and job from the metadata table, filters, CSV, charts, cost."""

from __future__ import annotations

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

#: how many records the page loads at most (newest first)
MAX_RECORDS = 2000
#: the API's ``arrival`` values (``GET /jobs?arrival=``) and how the page names them
ARRIVALS = {"presigned": "presigned upload", "direct": "direct upload (POST /images)", "drop": "bucket drop"}


def _all_pages(fetch: Any, limit: int = MAX_RECORDS) -> list[dict[str, Any]]:
    """Follow the API's cursor until ``limit`` records or the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(items) < limit:
        page = fetch(limit=min(100, limit - len(items)), cursor=cursor)
        if isinstance(page, dict):
            batch, cursor = page.get("items", []), page.get("next_cursor")
        elif isinstance(page, tuple):
            batch, cursor = page
        else:
            batch, cursor = list(page), None
        items.extend(batch)
        if not cursor or not batch:
            break
    return items


@st.cache_data(ttl=15, show_spinner="Loading images and jobs…")
def load(api_url: str, generation: int,
         arrival: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(jobs, images) from the API; cached for a few seconds per backend URL.

    ``generation`` (``st.session_state["data_generation"]``) is bumped by the Process page
    whenever a file finishes, so this session never sees a list without its own new jobs.
    ``arrival`` is passed to the API (``GET /jobs?arrival=``): only what came in that way.
    """
    client = get_client()
    return (_all_pages(lambda **kw: client.list_jobs(arrival=arrival, **kw)),
            _all_pages(lambda **kw: client.list_images(arrival=arrival, **kw)))


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


def _filters(df: pd.DataFrame) -> pd.DataFrame:
    formats = sorted(set(df["output_format"].dropna()) | set(df["input_format"].dropna()))
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1.3])
    fmt = c1.multiselect("Format (input or output)", formats, key="hist.format")
    status = c2.multiselect("Status", ["succeeded", "failed", "running", "queued"], key="hist.status")
    presets = c3.multiselect("Preset", sorted(df["preset"].dropna().unique()), key="hist.preset")
    dates = df["created_at"].dropna()
    start = end = None
    if not dates.empty:
        lo, hi = dates.min().date(), dates.max().date()
        picked = c4.date_input(
            "Date range (UTC)", value=(lo, hi), min_value=lo, max_value=hi, key="hist.dates"
        )
        if isinstance(picked, tuple) and len(picked) == 2:
            start, end = picked
    return analytics.filter_jobs(df, fmt, status, presets, start, end)


def _cost(df: pd.DataFrame) -> None:
    st.subheader("Estimated AWS cost per 1,000 images")
    durations = [
        d
        for d in (
            cost.processor_duration_ms(
                {s: row[f"ms_{s}"] for s in ("service_total", "total") if pd.notna(row[f"ms_{s}"])}
            )
            for _, row in df[df["status"] == "succeeded"].iterrows()
        )
        if d is not None
    ]
    if not durations:
        st.info("No succeeded job with timings in the current filter; process some images first.")
        return
    memory = st.select_slider(
        "Processor memory (MB)",
        [512, 1024, 1536, 1769, 1792, 2048, 3008, 4096],
        value=cost.DEFAULT_MEMORY_MB,
        key="hist.memory",
        help="The SAM template's ProcessorMemorySize (default 1792 MB)",
    )
    est = cost.estimate_per_1000(durations, memory)
    c1, c2 = st.columns([1, 1.4])
    c1.metric(
        "Total per 1,000 images",
        f"${est.total:.4f}",
        help=f"mean billed processor duration {est.mean_billed_ms:.0f} ms at {memory} MB, "
        f"from {len(durations)} measured job(s)",
    )
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
    top = st.columns([3, 1.3, 1])
    top[0].caption(
        f"From the metadata table behind {md_escape(info.api_url)} (newest {MAX_RECORDS} records)."
    )
    arrival = top[1].selectbox("Arrived by", [None, *ARRIVALS], key="hist.arrival",
                               format_func=lambda a: "any way" if a is None else ARRIVALS[a])
    if top[2].button("Refresh", icon=":material/refresh:", key="hist.refresh"):
        load.clear()
    try:
        jobs, images = load(info.api_url, st.session_state.get("data_generation", 0), arrival)
    except ImagePipeError as exc:
        show_api_error(exc, "Could not load the history")
        return
    df = analytics.jobs_frame(jobs, images, _preset_map())
    df.insert(2, "arrival", df["job_id"].map({j.get("job_id"): _arrival(j) for j in jobs}))
    if df.empty:
        st.info("No jobs yet. Process some images on the Process page.")
        st.dataframe(_images_table(images), hide_index=True)
        return
    shown = _filters(df)
    ok = shown[shown["status"] == "succeeded"]
    m = st.columns(5)
    m[0].metric("Jobs", len(shown))
    m[1].metric("Succeeded", len(ok))
    m[2].metric("Failed", int((shown["status"] == "failed").sum()))
    m[3].metric("Median ratio", f"{ok['ratio'].median():.2f}×" if not ok.empty else "–")
    m[4].metric("Bytes saved", f"{ok['bytes_saved'].sum() / 1e6:.2f} MB" if not ok.empty else "–")

    jobs_tab, images_tab = st.tabs([f"Jobs ({len(shown)})", f"Images ({len(images)})"])
    with jobs_tab:
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            height=min(420, 35 * (len(shown) + 1) + 3),
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
        st.download_button(
            "Export CSV",
            shown.to_csv(index=False).encode(),
            file_name="imagepipe-jobs.csv",
            mime="text/csv",
            icon=":material/download:",
            key="hist.csv",
            on_click="ignore",
        )
    with images_tab:
        st.dataframe(
            _images_table(images),
            hide_index=True,
            width="stretch",
            height=min(420, 35 * (len(images) + 1) + 3),
        )

    st.subheader("Charts")
    if ok.empty:
        st.info("No succeeded jobs in the current filter.")
    else:
        c1, c2 = st.columns(2)
        c1.altair_chart(analytics.chart_ratio_by_format(shown), width="stretch")
        c2.altair_chart(analytics.chart_saved_distribution(shown), width="stretch")
        c1.altair_chart(analytics.chart_timings(analytics.timing_quantiles(shown)), width="stretch")
        c2.altair_chart(analytics.chart_ratio_vs_mp(shown), width="stretch")
    c1, c2 = st.columns(2)
    c1.altair_chart(analytics.chart_jobs_over_time(shown), width="stretch")
    if (shown["status"] == "failed").any():
        c2.altair_chart(analytics.chart_failures(shown), width="stretch")
    else:
        c2.info("No failed jobs in the current filter.")
    _cost(shown)


page()
