"""The built wheel carries the host, the built-in plugins (`plugins/` as `rkdbench_plugins`) and the
package-data protocols and suites, and its installed entry points resolve to importable plugins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

CHECK = r"""
import json, sys
from importlib.metadata import entry_points, distribution
target = sys.argv[1]
eps = [ep for ep in entry_points(group="rkdbench") if str(ep.dist.locate_file("")).startswith(target)]
loaded = {}
for ep in eps:
    module = ep.load()
    loaded[ep.name] = module.__file__
import rkdbench, rkdbench.config as config
print(json.dumps({"entry_points": loaded, "rkdbench": rkdbench.__file__,
                  "protocols": config.builtin_names("protocols"), "suites": config.builtin_names("suites"),
                  "methods": rkdbench.list_components("method")}))
"""


def test_wheel_installs_and_entry_points_resolve(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "*.egg-info", "build", "dist", "__pycache__", "rkdbench-results", ".pytest_cache"
        ),
    )
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    # every shipped folder is declared: no "Package 'rkdbench.configs' is absent from the packages configuration"
    assert "absent from the" not in build.stdout + build.stderr, (build.stdout + build.stderr)[-3000:]
    [wheel] = list((tmp_path / "dist").glob("rkdbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"rkdbench/py.typed", "rkdbench_plugins/py.typed"} <= set(names)  # typed packages (PEP 561)
    assert "rkdbench_plugins/methods/rslad.py" in names and "rkdbench/configs/protocols/digits-linf.toml" in names
    # every source module is in the wheel: setuptools silently drops a package missing from the explicit list
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "rkdbench").rglob("*.py")}
    modules |= {"rkdbench_plugins/" + str(p.relative_to(ROOT / "plugins")) for p in (ROOT / "plugins").rglob("*.py")}
    assert modules <= set(names), f"modules left out of the wheel: {sorted(modules - set(names))}"
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "rkdbench" / "configs").rglob("*.toml")}
    assert shipped <= set(names), f"package data left out of the wheel: {sorted(shipped - set(names))}"
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    check = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert check.returncode == 0, check.stderr[-3000:]
    report = json.loads(check.stdout)
    assert report["rkdbench"].startswith(str(target))  # the wheel's copy, not the checkout
    assert len(report["entry_points"]) >= 8
    assert all(path.startswith(str(target)) for path in report["entry_points"].values())
    assert "digits-linf" in report["protocols"] and "digits-quick" in report["suites"]
    assert {"pgd-at", "ard", "rslad"} <= set(report["methods"])
