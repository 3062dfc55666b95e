"""The leaderboard package's layering: importing any of its modules loads neither torch nor the runner (rendering a
leaderboard never loads a training stack), and its modules import one another without a cycle (collect -> tables
-> renderers), counting imports inside functions too, since a deferred import is how a cycle hides."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import rkdbench.leaderboard

PACKAGE = "rkdbench.leaderboard"
FOLDER = Path(rkdbench.leaderboard.__file__).parent
MODULES = sorted(path.stem for path in FOLDER.glob("*.py"))  # `__init__` is the package itself


def _name(stem: str) -> str:
    return PACKAGE if stem == "__init__" else f"{PACKAGE}.{stem}"


def test_the_package_has_the_stages_it_documents():
    assert {
        "__init__",
        "collect",
        "tables",
        "table",
        "shown",
        "formats",
        "html",
        "terminal",
        "plots",
        "publish",
        "render",
    } <= set(MODULES)


def test_no_module_of_the_package_loads_torch_or_the_runner():
    code = (
        f"import importlib, json, sys\n"
        f"for name in {[_name(stem) for stem in MODULES]!r}:\n"
        f"    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in ('torch', 'rkdbench.runner', 'rkdbench.run') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def _imported_stems(stem: str) -> set[str]:
    """The package's modules that `stem` imports anywhere in its source (the package itself as `__init__`)."""
    tree = ast.parse((FOLDER / f"{stem}.py").read_text(), f"{stem}.py")
    base = PACKAGE.split(".")  # `.x` means the package's x, from `__init__` and from a module alike
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            parts = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*parts, *(node.module.split(".") if node.module else [])])
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE:
                found.add("__init__")
            elif name.startswith(PACKAGE + ".") and name[len(PACKAGE) + 1 :].split(".")[0] in MODULES:
                found.add(name[len(PACKAGE) + 1 :].split(".")[0])
    return found - {stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], path[len(path) :] = "open", [node]
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    return next((found for node in sorted(graph) if node not in state and (found := visit(node))), None)


def test_no_import_cycle_inside_the_package():
    graph = {stem: _imported_stems(stem) for stem in MODULES}
    assert graph["__init__"], "the package exports nothing: the import scan is broken"
    assert "shown" in graph["formats"] and "table" in graph["shown"]  # the scan sees real edges
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    importers_of_init = sorted(stem for stem, imported in graph.items() if "__init__" in imported)
    assert importers_of_init == [], f"modules importing the package itself: {importers_of_init}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
