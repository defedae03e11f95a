"""The Lambda package's modules import each other without cycles, lazy imports included:
a cycle hidden behind a function-level import still couples two modules both ways."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "lambda_src"
PACKAGES = {"imagepipe", "imagepipe.core", "imagepipe.service", "imagepipe.handlers"}


def _module_graph() -> dict[str, set[str]]:
    files = {".".join(f.with_suffix("").relative_to(ROOT).parts).removesuffix(".__init__"): f
             for f in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imagepipe"):
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("imagepipe"))
        # package __init__ files only re-export: an edge through them is not a real coupling
        graph[name] = {d for d in deps if d in files and d != name and d not in PACKAGES}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_lambda_package_has_no_import_cycles() -> None:
    graph = _module_graph()
    assert "imagepipe.core.engine" in graph and "imagepipe.service.sweeps" in graph
    assert _cycles(graph) == []


def test_lambda_package_never_imports_pipeline() -> None:
    offenders = [str(f.relative_to(ROOT)) for f in ROOT.rglob("*.py")
                 if any((isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "pipeline")
                        or (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "pipeline"
                                                              for a in n.names))
                        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))))]
    assert offenders == []
