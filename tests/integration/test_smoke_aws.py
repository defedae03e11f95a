"""The deployment smoke test (scripts/smoke.py).

* Against a deployed stack: runs only when ``IMAGEPIPE_SMOKE_API_URL`` + ``IMAGEPIPE_SMOKE_API_KEY``
  are set, or ``IMAGEPIPE_SMOKE_STACK`` (a CloudFormation stack name) with AWS credentials.
* Against the local stack: always, so the smoke script itself is exercised by ``make test``
  (the same flow, through the same ``pipeline.client.Client``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.client import Client
from scripts.smoke import run_smoke

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scripts" / "smoke.py"
EXPECTED_STEPS = [
    "s3_event_trigger",
    "download_s3_event",
    "api_trigger_and_idempotency",
    "download_api",
    "metadata",
]


def _run_cli(*args: str, timeout: float = 240) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, str(SMOKE), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, proc.stderr


def _aws_credentials() -> bool:
    try:
        import boto3

        return boto3.session.Session().get_credentials() is not None
    except Exception:
        return False


@pytest.mark.aws
def test_smoke_against_deployed_stack() -> None:
    url, key = os.environ.get("IMAGEPIPE_SMOKE_API_URL"), os.environ.get("IMAGEPIPE_SMOKE_API_KEY")
    stack = os.environ.get("IMAGEPIPE_SMOKE_STACK")
    if url and key:
        args = ["--api-url", url, "--api-key", key]
    elif stack and _aws_credentials():
        args = ["--stack-name", stack]
    else:
        pytest.skip(
            "no deployed stack: set IMAGEPIPE_SMOKE_API_URL + IMAGEPIPE_SMOKE_API_KEY, "
            "or IMAGEPIPE_SMOKE_STACK with AWS credentials"
        )
    code, report, stderr = _run_cli(*args, "--timeout", "180", timeout=900)
    assert code == 0, (report, stderr[-2000:])
    assert [s["name"] for s in report["steps"]] == EXPECTED_STEPS


@pytest.mark.integration
def test_smoke_script_against_local_stack(local_stack: Any) -> None:
    """The CLI end to end: every step passes and the exit status says so."""
    code, report, stderr = _run_cli(
        "--api-url", local_stack.api_url, "--api-key", local_stack.api_key, "--timeout", "90"
    )
    assert code == 0, (report, stderr[-2000:])
    assert report["ok"] is True
    assert [s["name"] for s in report["steps"]] == EXPECTED_STEPS
    by_name = {s["name"]: s for s in report["steps"]}
    assert by_name["download_s3_event"]["detail"]["format"] == "WEBP"
    assert by_name["download_api"]["detail"]["size"] == [100, 100]
    api = by_name["api_trigger_and_idempotency"]["detail"]
    assert api["job_id"] == api["duplicate_job_id"]


@pytest.mark.integration
def test_smoke_reports_failure_with_a_wrong_key(local_stack: Any) -> None:
    """The smoke can fail: a wrong key stops it at the first step with the API's error."""
    report = run_smoke(
        Client(local_stack.api_url, local_stack.api_key + "-wrong"), local_stack.api_url, timeout=10
    )
    assert report.ok is False
    assert [s.name for s in report.steps] == ["s3_event_trigger"]
    assert "nauthorized" in report.steps[0].detail["error"]
