"""System page: which backend is in use, the health of each component, the configuration in effect."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import streamlit as st

from imagepipe.errors import ImagePipeError
from pipeline.dashboard_backend import backend_info, get_client, mask_secret
from pipeline.presets import preset_names

#: component names as the API reports them -> what the page calls them
LABELS = {
    "api": "API (Lambda behind HTTP API)",
    "source_bucket": "S3 source bucket",
    "dest_bucket": "S3 destination bucket",
    "table": "DynamoDB metadata table",
    "queue": "SQS processing queue",
    "dlq": "SQS dead-letter queue",
    "workers": "Processor workers (Lambda runtime)",
}
LIMIT_ENV = [
    ("IMAGEPIPE_MAX_UPLOAD_BYTES", "26214400"),
    ("IMAGEPIPE_MAX_PIXELS", "50000000"),
    ("IMAGEPIPE_MAX_FRAMES", "300"),
    ("IMAGEPIPE_MAX_OUTPUT_BYTES", "52428800"),
    ("IMAGEPIPE_PRESIGN_EXPIRES", "900"),
    ("IMAGEPIPE_MAX_RECEIVE_COUNT", "3"),
]


def _detail(check: dict[str, Any]) -> str:
    parts = []
    for key, value in check.items():
        if key in {"ok", "error"}:
            continue
        parts.append(f"{key}={value}")
    if check.get("error"):
        parts.append(str(check["error"]))
    return ", ".join(parts)


def health_rows(health: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per component from the API's ``/health`` body (plus the API itself)."""
    rows = [{"component": LABELS["api"], "status": "ok", "detail": f"status={health.get('status', '?')}"}]
    checks = health.get("checks") or {}
    for name, check in checks.items():
        check = check if isinstance(check, dict) else {"ok": bool(check)}
        rows.append(
            {
                "component": LABELS.get(name, name),
                "status": "ok" if check.get("ok") else "FAILING",
                "detail": _detail(check),
            }
        )
    return rows


def page() -> None:
    """The System page."""
    st.title("System")
    info = backend_info()
    c1, c2 = st.columns(2)
    with c1, st.container(border=True):
        st.subheader("Backend")
        if info.kind == "embedded":
            st.markdown(
                "**Embedded local stack** (moto S3/DynamoDB/SQS on loopback, local API Gateway, "
                "local Lambda runtime), started by this dashboard process."
            )
        else:
            st.markdown(f"**Remote API** configured by `{info.source}`.")
        st.text(f"API URL:   {info.api_url}")
        st.text(f"API key:   {info.masked_key}")
        if info.data_dir:
            st.text(f"Data dir:  {info.data_dir}")
    with c2, st.container(border=True):
        st.subheader("Health")
        try:
            health = get_client().health()
        except ImagePipeError as exc:
            st.error(f"The API is not healthy: {exc.code}")
            st.code(exc.message, language=None)
            health = None
        if health is not None:
            rows = health_rows(health if isinstance(health, dict) else dict(health))
            failing = [r for r in rows if r["status"] != "ok"]
            if failing:
                st.error(f"{len(failing)} component(s) failing")
            else:
                st.success("All components healthy")
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
            if health.get("dlq_depth"):
                st.warning(
                    f"{health['dlq_depth']} message(s) in the dead-letter queue: jobs that failed "
                    "every retry (they show as failed in History)."
                )
        if st.button("Re-check", icon=":material/refresh:", key="sys.recheck"):
            st.rerun()

    st.subheader("Configuration in effect")
    t1, t2 = st.columns(2)
    with t1:
        st.markdown("**Dashboard**")
        rows = [
            {"setting": "server.maxUploadSize (MiB)", "value": str(st.get_option("server.maxUploadSize"))},
            {"setting": "backend source", "value": info.source},
            {"setting": "IMAGEPIPE_API_KEY", "value": info.masked_key},
            {"setting": "IMAGEPIPE_DATA_DIR", "value": info.data_dir or "(not used)"},
            {"setting": "presets", "value": ", ".join(preset_names())},
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    with t2:
        st.markdown(
            "**Limits**"
            + (" (server side)" if info.kind == "embedded" else " (defaults; the AWS stack's may differ)")
        )
        config = (health or {}).get("config") if isinstance(health, dict) else None
        if isinstance(config, dict) and config:
            limit_rows = [
                {"setting": k, "value": mask_secret(str(v)) if "key" in k.lower() else str(v)}
                for k, v in sorted(config.items())
            ]
        else:
            limit_rows = [
                {"setting": name, "value": os.environ.get(name, default)} for name, default in LIMIT_ENV
            ]
        st.dataframe(pd.DataFrame(limit_rows), hide_index=True, width="stretch")


page()
