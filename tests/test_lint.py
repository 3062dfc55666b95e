"""The tree passes ruff, lint and format, under the configuration in pyproject.toml (what `tox -e lint` runs).

Skipped when ruff is not importable; the `test` extra installs it, so CI runs these."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="ruff is not installed (pip install -e '.[lint]' or '.[test]')"
)


def ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # --no-cache: the tests write nothing into the clone
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache"],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_configured_rules_are_the_ones_in_force():
    # a probe file under rkdbench/ (never written): an unused import and a loop variable captured by a closure must be
    # reported, so a passing check below means the rules ran on the tree, not that ruff found nothing to read
    probe = "import os\n\nfns = []\nfor i in range(3):\n    fns.append(lambda: i)\n"
    result = ruff("check", "--stdin-filename", "rkdbench/_lint_probe.py", "-", stdin=probe)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "F401" in result.stdout and "B023" in result.stdout, result.stdout


def test_ruff_check_passes():
    result = ruff("check", ".")
    assert result.returncode == 0, f"`ruff check .` found:\n{result.stdout}{result.stderr}"


def test_ruff_format_check_passes():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, f"`ruff format --check .` would reformat (run `ruff format .`):\n{result.stdout}"
