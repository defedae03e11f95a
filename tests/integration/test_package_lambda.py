"""``make package`` end to end, for the local machine: scripts/package_lambda.sh builds the Lambda
bundle (same requirements, same steps as the aarch64 one) for this architecture and Python, then a
clean interpreter (``-I -S``: no site-packages, only the bundle and the stdlib) imports the engine
from the bundle and processes an image through libvips (``--smoke``). The bundle carries bytecode
compiled by that Python (``--bytecode``)."""

from __future__ import annotations

import platform
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_built_bundle_processes_an_image_in_a_clean_interpreter(tmp_path: Path) -> None:
    arch = platform.machine()
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    r = subprocess.run(
        ["bash", "scripts/package_lambda.sh", "--out", str(tmp_path), "--arch", arch, "--python-version", py,
         "--smoke", sys.executable, "--bytecode", sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    smoke = [line for line in r.stdout.splitlines() if line.startswith("== smoke:")]
    assert smoke and "vips_thumbnail:640x480->160x120" in smoke[0], r.stdout[-2000:]
    assert f"from {tmp_path}/lambda" in smoke[0]  # pyvips came from the bundle, not the venv
    assert "newest glibc symbol version needed" in r.stdout
    names = zipfile.ZipFile(tmp_path / "lambda.zip").namelist()
    assert any(n.startswith("pyvips_binary") for n in names) and "imagepipe/core/vips.py" in names
    assert not any(n.startswith(("boto3/", "botocore/")) for n in names)
    # bytecode for the runtime's Python ships in the bundle (a read-only /var/task cannot cache it):
    # our code and the libraries, but not the libraries' own test suites
    tag = sys.implementation.cache_tag
    assert "== bytecode:" in r.stdout
    for module in ("imagepipe/core/engine", "imagepipe/core/recipe", "numpy/__init__", "pydantic/main"):
        head, _, tail = module.rpartition("/")
        assert f"{head}/__pycache__/{tail}.{tag}.pyc" in names, module
    assert not any("/tests/" in n and n.endswith(".pyc") for n in names)
