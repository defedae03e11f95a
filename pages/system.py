"""System page: which backend is in use, the health of each component, the configuration in
effect, and the presets and bucket drop rules the service uses (``GET /presets``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

import pages  # noqa: F401  (first: sys.path + router guard, see pages/__init__.py)
from imagepipe.errors import ImagePipeError
from pages.ui.widgets import backend_or_stop, show_api_error
from pipeline.dashboard_backend import (
    embedded_stack_env,
    embedded_stack_health,
    get_client,
    mask_secret,
)
from pipeline.presets import preset_names

#: component names as the API reports them -> what the page calls them
LABELS = {
    "api": "API (Lambda behind HTTP API)",
    "source_bucket": "S3 source bucket",
    "dest_bucket": "S3 destination bucket",
    "table": "DynamoDB metadata table",
    "queue": "SQS processing queue",
    "dlq": "SQS dead-letter queue",
    "workers": "Processor workers",
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


def worker_row(local: dict[str, Any] | None) -> dict[str, Any]:
    """The processor workers' row: from the embedded stack, or why it is not observable."""
    if local is None:
        return {
            "component": LABELS["workers"],
            "status": "n/a",
            "detail": "not visible through the API (AWS Lambda or another process runs them)",
        }
    workers = local.get("workers") or {}
    alive, size = int(workers.get("alive", 0)), int(workers.get("size", 0))
    stats = workers.get("stats") or {}
    detail = f"alive={alive}/{size}, busy={workers.get('busy', 0)}"
    counts = {k: v for k, v in sorted(stats.items()) if isinstance(v, int) and (v or k == "invocations")}
    if counts:
        detail += ", " + ", ".join(f"{k}={v}" for k, v in counts.items())
    return {"component": LABELS["workers"], "status": "ok" if alive > 0 else "FAILING", "detail": detail}


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


def _health_panel() -> None:
    st.subheader("Health")
    try:
        health = get_client().health()
    except ImagePipeError as exc:
        show_api_error(exc, "The API is not reachable or not healthy")
        return
    rows = health_rows(health)
    rows.append(worker_row(embedded_stack_health()))
    failing = [r for r in rows if r["status"] == "FAILING"]
    if failing:
        st.error(f"{len(failing)} component(s) failing")
    else:
        st.success("All components healthy")
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        height=_fit(len(rows)),
        column_config={
            "component": st.column_config.TextColumn(width="medium"),
            "status": st.column_config.TextColumn(width="small"),
            "detail": st.column_config.TextColumn(width="large"),
        },
    )
    if health.get("dlq_depth"):
        st.warning(
            f"{health['dlq_depth']} message(s) in the dead-letter queue: jobs that failed every "
            "retry (they show as failed in History)."
        )


def _service_config(kind: str) -> None:
    env = embedded_stack_env()
    if env is not None:
        st.markdown("**Service** (the environment the local Lambda functions run with)")
        rows = [
            {"setting": k, "value": mask_secret(v) if k.endswith("API_KEY") else v}
            for k, v in sorted(env.items())
            if k.startswith(("IMAGEPIPE_", "AWS_ENDPOINT", "AWS_REGION"))
        ]
    else:
        st.markdown(
            "**Service limits** (documented defaults; a deployed stack's own values are not "
            "exposed by the API)"
        )
        rows = [{"setting": name, "value": default} for name, default in LIMIT_ENV]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=_fit(len(rows)))


def _recipe_summary(recipe: dict[str, Any]) -> str:
    """``webp q80, inside 1600×1600`` for a canonical recipe."""
    parts = [str(recipe.get("format") or "original")]
    encoder = (recipe.get("jpeg") or {}).get("encoder")
    if recipe.get("format") == "jpeg" and encoder and encoder != "turbo":
        parts[0] += f" ({encoder})"
    if recipe.get("quality") is not None and recipe.get("format") not in ("png", "gif", "original"):
        parts[0] += f" q{recipe['quality']}"
    resize = recipe.get("resize")
    if resize:
        parts.append(f"{resize.get('fit')} {resize.get('width') or '–'}×{resize.get('height') or '–'}")
    parts.append(f"metadata {recipe.get('metadata')}")
    return ", ".join(parts)


def preset_rows(catalog: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per preset of ``GET /presets``."""
    return [{"preset": p["name"] + (" (default)" if p["name"] == catalog.get("default") else ""),
             "id": p.get("id", ""), "recipe": _recipe_summary(p["recipe"]), "recipe_hash": p["recipe_hash"],
             "description": p.get("description", "")} for p in catalog.get("items", [])]


def _action(rule: dict[str, Any]) -> str:
    if rule.get("skip"):
        return "skip (record only, no job)"
    if rule.get("preset"):
        return f"preset “{rule['preset']}”"
    return f"recipe: {_recipe_summary(rule.get('recipe') or {})}"


def drop_rule_rows(catalog: dict[str, Any]) -> list[dict[str, Any]]:
    """The drop rules in the order they are tried, then the default rule."""
    rows = [{"order": str(i), "prefix": r["prefix"], "action": _action(r)}
            for i, r in enumerate(catalog.get("drop_rules", []), 1)]
    rows.append({"order": "default", "prefix": "(anything else under the upload prefix)",
                 "action": _action(catalog.get("drop_default") or {"skip": True})})
    return rows


def _presets_panel() -> None:
    st.subheader("Presets and bucket drop rules")
    try:
        catalog = get_client().presets()
    except ImagePipeError as exc:
        show_api_error(exc, "Could not load the presets")
        return
    st.caption("What the service resolves `preset` to, and what happens to a file put into the source "
               "bucket by any S3 client (the first matching prefix wins). Source: "
               "`lambda_src/imagepipe/presets.json`, overridden by `IMAGEPIPE_PRESETS` (docs/api.md).")
    p1, p2 = st.columns([3, 2])
    presets = preset_rows(catalog)
    p1.dataframe(pd.DataFrame(presets), hide_index=True, width="stretch", height=_fit(len(presets)),
                 key="sys.presets")
    rules = drop_rule_rows(catalog)
    p2.dataframe(pd.DataFrame(rules), hide_index=True, width="stretch", height=_fit(len(rules)),
                 key="sys.drop_rules")


def _fit(n_rows: int) -> int:
    """A dataframe height that shows every row without an inner scrollbar."""
    return 35 * (n_rows + 1) + 3


def page() -> None:
    """The System page."""
    st.title("System")
    info = backend_or_stop()
    c1, c2 = st.columns([1, 2])
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
        if st.button("Re-check health", icon=":material/refresh:", key="sys.recheck"):
            st.rerun()
    with c2, st.container(border=True):
        _health_panel()

    st.subheader("Configuration in effect")
    t1, t2 = st.columns(2)
    with t1:
        st.markdown("**Dashboard**")
        rows = [
            {"setting": "server.maxUploadSize (MiB)", "value": str(st.get_option("server.maxUploadSize"))},
            {"setting": "backend source", "value": info.source},
            {"setting": "API key", "value": info.masked_key},
            {"setting": "IMAGEPIPE_DATA_DIR", "value": info.data_dir or "(not used)"},
            {"setting": "presets", "value": ", ".join(preset_names())},
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", height=_fit(len(rows)))
    with t2:
        _service_config(info.kind)
    _presets_panel()


page()
