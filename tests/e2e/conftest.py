"""Browser fixtures: Debian's Chromium through Playwright, and ``streamlit run`` on the local stack."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/`` (screenshots), created on demand."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's, never a Playwright download)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; `make browser` (part of `make test`) installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def _streamlit(env_overrides: dict[str, str | None], log_path: Path) -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free loopback port; yields its URL, stops it after."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"streamlit did not start in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}"
                )
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()  # SIGTERM: streamlit exits, atexit stops an embedded stack
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log_text = log_path.read_text(errors="replace")
        if "Traceback" in log_text:
            print(f"--- streamlit log ({log_path}) ---\n{log_text[-5000:]}")


@pytest.fixture(scope="session")
def dashboard_url(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard talking to the session's local stack through IMAGEPIPE_API_URL/KEY."""
    log_path = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {"IMAGEPIPE_API_URL": local_stack.api_url, "IMAGEPIPE_API_KEY": local_stack.api_key}
    with _streamlit(env, log_path) as url:
        yield url


@pytest.fixture
def embedded_dashboard_url(tmp_path: Path) -> Iterator[str]:
    """The dashboard as ``make run`` starts it: no API URL, so it starts its own embedded stack
    (in a temp IMAGEPIPE_DATA_DIR)."""
    env = {
        "IMAGEPIPE_API_URL": None,
        "IMAGEPIPE_API_KEY": None,
        "IMAGEPIPE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEPIPE_LOG_LEVEL": "WARNING",
    }
    with _streamlit(env, tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser page (1440×1000) per test."""
    context = chromium.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        context.close()
