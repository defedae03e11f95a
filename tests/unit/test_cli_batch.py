"""Batch runner: a worker that dies only fails its own file; the others still finish."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli
from pipeline.cli import Task, run_batch


def _fake_task(task: Task) -> dict[str, Any]:
    """Stands in for ``run_task`` in the forked workers: ``crash*`` files kill the process."""
    if task.source.name.startswith("crash"):
        os._exit(9)
    return {"index": task.index, "input": str(task.source), "output": f"{task.stem}.out", "status": "ok",
            "facts": {}, "elapsed_ms": 0.0}


@pytest.mark.timeout(60)
def test_a_crashing_worker_fails_only_its_file(monkeypatch):
    monkeypatch.setattr(cli, "run_task", _fake_task)  # workers are forked, so they see the patch
    names = ["a.jpg", "b.jpg", "crash.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]
    tasks = [Task(i, Path(n), Path(n).stem) for i, n in enumerate(names)]
    records = sorted(run_batch(tasks, 2, ({}, None, ".")), key=lambda r: r["index"])
    assert [r["input"] for r in records] == names  # every file reported exactly once
    statuses = {r["input"]: (r["status"], (r.get("error") or {}).get("code")) for r in records}
    assert statuses.pop("crash.jpg") == ("failed", "worker_crashed")
    assert set(statuses.values()) == {("ok", None)}
