"""The CLI benchmark times commands whose project modules are already compiled, as on a user's
machine, even where ``PYTHONDONTWRITEBYTECODE`` keeps the interpreter from writing caches."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pipeline.bench.cli_bench import precompile


def test_precompile_writes_fresh_caches_even_when_bytecode_writing_is_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    sources = [tmp_path / "pipeline" / "a.py", tmp_path / "lambda_src" / "pkg" / "b.py"]
    for src in sources:
        src.parent.mkdir(parents=True)
        src.write_text("X = 1\n")
    precompile(tmp_path)
    for src in sources:
        assert Path(importlib.util.cache_from_source(str(src))).is_file(), src
