"""How the dashboard obtains its ``pipeline.client.Client``.

Resolution order, evaluated on every script run (cheap) so a changed environment is seen:

1. ``IMAGEPIPE_API_URL`` (+ ``IMAGEPIPE_API_KEY``) from the environment;
2. ``api_url`` / ``api_key`` in ``.streamlit/secrets.toml``;
3. otherwise the embedded local stack, started once per server process (``st.cache_resource``)
   with its data under ``IMAGEPIPE_DATA_DIR`` (default ``.imagepipe``), reused by every rerun
   and every browser session, and stopped when the process exits.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

import pipeline  # noqa: F401  (puts lambda_src on sys.path)

DEFAULT_DATA_DIR = ".imagepipe"


@dataclass(frozen=True)
class BackendInfo:
    """Which backend the dashboard talks to, for the System page."""

    kind: Literal["remote", "embedded"]
    api_url: str
    api_key: str
    source: str  # "IMAGEPIPE_API_URL", "secrets.toml" or "embedded local stack"
    data_dir: str | None = None

    @property
    def masked_key(self) -> str:
        """The API key with all but its last 4 characters hidden."""
        return mask_secret(self.api_key)


def mask_secret(value: str) -> str:
    """``"abcdef123456"`` -> ``"••••••••3456"`` (length not revealed); short values fully hidden."""
    if not value:
        return "(none)"
    if len(value) <= 8:
        return "••••••••"
    return "••••••••" + value[-4:]


def _secret(name: str) -> str | None:
    """A top-level value from ``.streamlit/secrets.toml``; None when the file or key is absent."""
    try:
        value: Any = st.secrets.get(name)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None
    return str(value) if value else None


def configured_remote() -> tuple[str, str, str] | None:
    """``(api_url, api_key, source)`` when an API URL is configured, else None."""
    url = os.environ.get("IMAGEPIPE_API_URL")
    if url:
        return url, os.environ.get("IMAGEPIPE_API_KEY", ""), "IMAGEPIPE_API_URL"
    url = _secret("api_url")
    if url:
        return url, _secret("api_key") or "", "secrets.toml"
    return None


@st.cache_resource(show_spinner="Starting the embedded local stack (S3, DynamoDB, SQS, Lambda)...")
def _embedded_stack(data_dir: str) -> Any:
    """Start the local stack once per server process and per data dir; stop it at exit."""
    from pipeline.stack import LocalStack

    stack = LocalStack(data_dir=data_dir)
    stack.start()
    atexit.register(stack.stop)
    return stack


@st.cache_resource(show_spinner=False)
def _client(api_url: str, api_key: str) -> Any:
    """One HTTP client per (URL, key), shared by reruns and sessions (it is thread-safe)."""
    from pipeline.client import Client

    return Client(api_url, api_key)


def backend_info() -> BackendInfo:
    """Resolve the backend, starting the embedded stack if no API URL is configured."""
    remote = configured_remote()
    if remote is not None:
        url, key, source = remote
        return BackendInfo(kind="remote", api_url=url, api_key=key, source=source)
    data_dir = os.path.abspath(os.environ.get("IMAGEPIPE_DATA_DIR", DEFAULT_DATA_DIR))
    stack = _embedded_stack(data_dir)
    return BackendInfo(kind="embedded", api_url=stack.api_url, api_key=stack.api_key,
                       source="embedded local stack", data_dir=data_dir)


def embedded_stack_health() -> dict[str, Any] | None:
    """The embedded stack's own snapshot (workers, event source) or None for a remote API.

    The API's ``/health`` cannot see the processor's workers (on AWS they are Lambda's
    business); locally the dashboard owns the stack object and can ask it directly.
    """
    info = backend_info()
    if info.kind != "embedded" or info.data_dir is None:
        return None
    return _embedded_stack(info.data_dir).health()


def embedded_stack_env() -> dict[str, str] | None:
    """The environment the embedded stack gives its Lambda functions (None for a remote API)."""
    info = backend_info()
    if info.kind != "embedded" or info.data_dir is None:
        return None
    return dict(_embedded_stack(info.data_dir).env)


def get_client() -> Any:
    """The ``pipeline.client.Client`` every page uses."""
    info = backend_info()
    return _client(info.api_url, info.api_key)
