"""Static checks on the page scripts that no AppTest run can catch (AppTest always goes through
the router, so ``lambda_src`` is already on ``sys.path`` when a page runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"
PAGE_SCRIPTS = sorted(p for p in PAGES_DIR.glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> list[ast.stmt]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    ]


def test_there_are_page_scripts() -> None:
    assert {p.name for p in PAGE_SCRIPTS} >= {"process.py", "compare.py", "history.py", "system.py"}


@pytest.mark.parametrize("script", PAGE_SCRIPTS, ids=lambda p: p.name)
def test_page_imports_pages_before_any_project_module(script: Path) -> None:
    """A deep link that is a server process's first request runs the page without the router
    (docs/dashboard.md): ``import pages`` must come before ``imagepipe``/``pipeline``/``pages.ui``
    imports, or that first run fails with ModuleNotFoundError instead of rerunning the router."""
    project = ("imagepipe", "pipeline", "pages")
    for node in _imports(script):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if any(n == "pages" for n in names) and isinstance(node, ast.Import):
            return
        assert not any(n.split(".")[0] in project for n in names), (
            f"{script.name}: line {node.lineno} imports {names} before `import pages`"
        )
    pytest.fail(f"{script.name} never does `import pages`")
