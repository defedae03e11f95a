"""``lambda_src/requirements.lock`` (``make lock``) pins what the Lambda bundle ships, and the venv
the tests run in has exactly those versions: what is tested is what deploys."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "lambda_src" / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in _lines(LOCK):
        m = PIN.match(line)
        assert m, f"not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def test_every_line_of_the_lock_is_an_exact_pin() -> None:
    assert len(_lock()) >= 5


@pytest.mark.parametrize("line", _lines(ROOT / "lambda_src" / "requirements.txt"))
def test_the_lock_satisfies_each_lambda_requirement(line: str) -> None:
    req = Requirement(line.split("#")[0].strip())
    pinned = _lock().get(canonicalize_name(req.name))
    assert pinned is not None, f"{req.name} is not in requirements.lock: run `make lock`"
    assert req.specifier.contains(pinned, prereleases=True), (
        f"{req.name}=={pinned} does not satisfy {req}: run `make lock`")


def test_the_venv_runs_the_locked_versions() -> None:
    wrong = {}
    for name, version in _lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a package only the Lambda platform needs
        if installed != version:
            wrong[name] = (installed, version)
    assert wrong == {}, f"installed vs locked (run `make install` or `make lock`): {wrong}"
