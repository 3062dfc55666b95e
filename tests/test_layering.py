"""The package's layering, checked from the source: no import cycle between modules or between the packages of
`rkdbench/` (function-local imports included: they hide cycles, they do not remove them), and no import that goes up
the order of tiers that docs/architecture.md declares in its `layers` block (top tier first). Imports of a module's own
enclosing packages are not edges: Python has initialised those before the module runs."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(package: Path = ROOT / "rkdbench") -> dict[str, tuple[Path, bool]]:
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return names


def import_graph(package: Path = ROOT / "rkdbench") -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its body (a package import means its __init__)."""
    modules = module_names(package)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, (path, is_package) in modules.items():
        package = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                candidates = [f"{target}.{alias.name}" for alias in node.names]
                if not (name == target or name.startswith(target + ".")):
                    candidates.append(target)
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for candidate in candidates:
                parts = candidate.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                found = ".".join(parts)
                if found and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit(module: str) -> str:
    """The package (or top-level module) of `rkdbench` a module belongs to: `rkdbench.run.cell` -> `run`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rkdbench"


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        for target in targets:
            if unit(module) != unit(target):
                graph[unit(module)].add(unit(target))
    return graph


def declared_tiers() -> list[list[str]]:
    """docs/architecture.md's ```layers block: one tier a line, the top first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    return [line.split("#")[0].split() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_no_module_imports_another_in_a_cycle():
    assert cycles(import_graph()) == []


def test_no_package_imports_another_in_a_cycle():
    assert cycles(package_graph()) == []


def test_every_package_sits_in_one_declared_tier():
    tiers = declared_tiers()
    declared = [name for tier in tiers for name in tier]
    assert len(declared) == len(set(declared)), "a name appears in two tiers"
    units = {unit(module) for module in module_names()}
    assert units - set(declared) == set(), "packages missing from docs/architecture.md's layers"
    assert set(declared) - units == set(), "docs/architecture.md's layers name packages that do not exist"


def test_imports_go_down_the_declared_tiers():
    tier = {name: depth for depth, names in enumerate(reversed(declared_tiers())) for name in names}
    upward = sorted(
        f"{importer} -> {imported}"
        for importer, imported_units in package_graph().items()
        for imported in imported_units
        if tier[imported] > tier[importer]
    )
    assert upward == []


def test_the_checker_finds_a_cycle_hidden_in_a_function_local_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def late():\n    from .. import a\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b", "pkg.sub"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_only_the_command_layers_import_click():
    """Printing and exit codes live in `cli/` and `app/`; the library below returns data."""
    importers = set()
    for path in (ROOT / "rkdbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(name == "click" or name.startswith("click.") for name in names):
                importers.add(unit(".".join(path.relative_to(ROOT).with_suffix("").parts)))
    assert importers <= {"cli", "app"}, importers
