"""Helpers for tests and benchmarks: run ``python -m pipeline serve`` as a real process.

A subprocess is the faithful way to test restarts and hard kills: it is exactly what a
user runs, SIGTERM exercises the clean shutdown path and SIGKILL the crash path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from pipeline import PROJECT_ROOT


class ServeProcess:
    """``python -m pipeline serve --port 0 --data-dir DIR`` with its ``API_URL``/``API_KEY``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        workers: int = 2,
        api_key: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.api_key = api_key or ""
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.api_url = ""
        self.endpoint_url = ""
        self.lines: list[str] = []
        self._log: IO[str] | None = None

    def start(self) -> ServeProcess:
        """Start and wait for ``API_URL=`` and ``API_KEY=`` on stdout."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pipeline",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--workers",
            str(self.workers),
            *self.extra_args,
        ]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        env = dict(os.environ)
        for name in ("AWS_ENDPOINT_URL", "IMAGEPIPE_API_KEY", "IMAGEPIPE_API_URL"):
            env.pop(name, None)  # never inherit another stack's endpoint
        env.update(self.env)
        self._log = open(self.data_dir / "serve.stderr.log", "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env
        )
        ready = threading.Event()

        def _read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.strip()
                self.lines.append(line)
                key, _, value = line.partition("=")
                if key == "API_URL":
                    self.api_url = value
                elif key == "API_KEY":
                    self.api_key = value
                elif key == "AWS_ENDPOINT_URL":
                    self.endpoint_url = value
                    ready.set()
            ready.set()

        threading.Thread(target=_read, daemon=True).start()
        if not ready.wait(self.start_timeout) or not self.api_url:
            self.kill()
            raise RuntimeError(f"serve did not start: {self.lines!r}; see {self.data_dir}/serve.stderr.log")
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (a clean stop); returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._close()
        return code

    def kill(self) -> None:
        """SIGKILL (a hard crash); children notice their parent is gone and exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()
        time.sleep(0.2)

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
