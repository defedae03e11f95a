"""The one Streamlit internal the dashboard relies on, checked loudly.

Streamlit has no supported setting, file layout or API to keep a ``pages/`` folder next to the
entry point out of its legacy (v1) multipage mode on a server process's first run: the mode is
decided by ``PagesManager.uses_pages_directory`` before any script runs, and only
``st.navigation`` clears it. ``pages/__init__.py`` therefore clears it and reruns through the
router (docs/dashboard.md). If a Streamlit upgrade moves or drops that internal, these tests fail
and say what to do, instead of the dashboard silently showing a bare page on a deep link.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPGRADE_HINT = ("Streamlit changed its legacy pages/ handling: re-check pages/__init__.py's guard "
                "(docs/dashboard.md) against the new version, then update this test")


def test_pages_manager_still_has_the_legacy_flag() -> None:
    from streamlit.runtime.pages_manager import PagesManager

    assert "uses_pages_directory" in vars(PagesManager), UPGRADE_HINT


def test_a_pages_folder_still_turns_the_legacy_mode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The behaviour the guard exists for: a fresh process with ``pages/`` beside the entry point
    starts in v1 mode. If this stops being true, the guard is dead code and can go."""
    from streamlit.runtime.pages_manager import PagesManager

    monkeypatch.setattr(PagesManager, "uses_pages_directory", None)
    PagesManager(str(ROOT / "streamlit_app.py"))
    assert PagesManager.uses_pages_directory is True, UPGRADE_HINT


def test_the_script_runner_still_reads_the_flag_and_navigation_still_clears_it() -> None:
    from streamlit.commands import navigation
    from streamlit.runtime.scriptrunner import script_runner

    assert "PagesManager.uses_pages_directory" in inspect.getsource(script_runner.ScriptRunner), UPGRADE_HINT
    assert "PagesManager.uses_pages_directory = False" in inspect.getsource(navigation.navigation), (
        UPGRADE_HINT)


def test_the_guard_uses_importable_names() -> None:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    assert callable(get_script_run_ctx), UPGRADE_HINT
    source = (ROOT / "pages" / "__init__.py").read_text(encoding="utf-8")
    assert "from streamlit.runtime.pages_manager import PagesManager" in source
    assert "from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx" in source
