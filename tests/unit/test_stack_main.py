"""``python -m pipeline``: the serve/process dispatcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_process_is_delegated_to_the_cli(monkeypatch):
    import pipeline.cli

    seen: list[list[str]] = []
    monkeypatch.setattr(pipeline.cli, "main", lambda argv: seen.append(argv) or 7)
    assert main(["process", "in/", "--out", "out/"]) == 7
    assert seen == [["in/", "--out", "out/"]]


def test_serve_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--data-dir", "--workers", "--api-key"):
        assert flag in out


def test_unknown_command_and_no_command():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert main([]) == 2


def test_serve_reports_a_data_dir_in_use(tmp_path):
    from pipeline.stack.emulator import Emulator

    emu = Emulator(tmp_path / "emulator").start()  # the layout LocalStack uses: DATA_DIR/emulator
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        emu.stop()
    assert proc.returncode == 1
    assert "in use by another running stack" in proc.stderr
