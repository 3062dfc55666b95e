"""The public API is exactly what plugin authors are shown and use: every `rkdbench` import in the built-in plugins,
the package `rkdbench new-plugin` writes and the python blocks of docs/*.md is `from rkdbench import NAME` with NAME
in `rkdbench.__all__` (never a submodule); every name in `__all__` resolves, and each is used by a built-in plugin,
the scaffold or docs/plugins.md (which documents the pytest plugin too), so the API holds no dead names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rkdbench
from rkdbench.app.scaffold import plugin_names, scaffold_plugin

ROOT = Path(__file__).resolve().parents[1]


def rkdbench_imports(source: str) -> tuple[set[str], list[str]]:
    """(the names imported `from rkdbench import ...`, the other imports of rkdbench or its submodules)."""
    names: set[str] = set()
    other: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module == "rkdbench":
                names |= {alias.name for alias in node.names}
            elif node.module.startswith("rkdbench."):
                other.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            other += [f"import {a.name}" for a in node.names if a.name == "rkdbench" or a.name.startswith("rkdbench.")]
    return names, other


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), re.S)


def sources(tmp_path: Path) -> dict[str, str]:
    """Where plugin authors learn the API: the built-in plugins, a freshly scaffolded package, the docs' code."""
    found = {str(path.relative_to(ROOT)): path.read_text() for path in sorted((ROOT / "plugins").rglob("*.py"))}
    scaffolded = scaffold_plugin(tmp_path, plugin_names("api-probe"))
    found |= {f"scaffold:{path.relative_to(tmp_path)}": path.read_text() for path in scaffolded if path.suffix == ".py"}
    for markdown in sorted((ROOT / "docs").glob("*.md")):
        found |= {f"docs/{markdown.name}#{i}": block for i, block in enumerate(python_blocks(markdown))}
    return found


def test_every_rkdbench_import_is_a_public_name_of_the_top_level(tmp_path):
    found = sources(tmp_path)
    assert any(key.startswith("scaffold:") for key in found) and any(key.startswith("docs/") for key in found)
    problems = []
    for where, source in found.items():
        names, other = rkdbench_imports(source)
        problems += [f"{where}: {statement}" for statement in other]
        problems += [f"{where}: {name} is not in rkdbench.__all__" for name in sorted(names - set(rkdbench.__all__))]
    assert problems == []


def test_every_public_name_resolves_and_is_used(tmp_path):
    assert len(rkdbench.__all__) == len(set(rkdbench.__all__))
    for name in rkdbench.__all__:
        assert getattr(rkdbench, name) is not None, name
    found = sources(tmp_path)
    used: set[str] = set()
    for where, source in found.items():
        if not where.startswith("docs/") or where.startswith("docs/plugins.md#"):
            used |= rkdbench_imports(source)[0]
    assert sorted(set(rkdbench.__all__) - used) == [], "names no plugin, scaffold or docs/plugins.md uses"


def test_the_checker_sees_submodule_imports():
    names, other = rkdbench_imports(
        "import rkdbench\nimport rkdbench_plugins.methods.ard\nfrom rkdbench import Method, kl_div\n"
        "from rkdbench.contracts.losses import kl_div\ndef f():\n    import rkdbench.data\n"
    )
    assert names == {"Method", "kl_div"}
    assert other == ["import rkdbench", "from rkdbench.contracts.losses import ...", "import rkdbench.data"]
