"""`rkdbench new-plugin`: the scaffolded package's own tests (by hand, and through the fixtures of rkdbench's pytest
plugin, which its conftest activates) pass, its method trains through `--plugins-dir` to a FINISHED MLflow run and
a leaderboard row, and bad or taken names are one-line errors (exit 2)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from rkdbench import plugins
from support.cli import cli, runs_of

TINY = ["--set", "train.epochs=1", "--set", "eval.n_examples=8", "--set", "train.val_pgd_steps=2"]


@pytest.fixture
def unload_plugins_dir():
    """The scaffold's loose modules are registered in the session's plugin manager: remove them afterwards so
    later tests (which iterate over every method) never see the new method."""
    yield
    for stem in ("method", "__init__"):
        if plugins.pm.has_plugin(f"plugins-dir:{stem}"):
            plugins.pm.unregister(name=f"plugins-dir:{stem}")
        sys.modules.pop(f"rkdbench_plugins_dir_{stem}", None)
    plugins.reset(keep_plugins=True)


def test_scaffold_writes_the_package_and_its_tests_pass(tmp_path, capsys):
    assert cli("new-plugin", "fancy-kd", "--dir", str(tmp_path), "--method", "fancy") == 0
    pkg = tmp_path / "fancy-kd"
    assert "wrote" in capsys.readouterr().out
    assert {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()} == {
        "pyproject.toml",
        "README.md",
        "suite.toml",
        "src/fancy_kd/__init__.py",
        "src/fancy_kd/method.py",
        "tests/conftest.py",
        "tests/test_method.py",
    }
    project = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert project["project"]["name"] == "fancy-kd" and project["project"]["dependencies"] == ["rkdbench"]
    assert project["project"]["entry-points"]["rkdbench"] == {"method-fancy": "fancy_kd.method"}
    suite = tomllib.loads((pkg / "suite.toml").read_text())["suite"]
    assert suite["methods"] == ["fancy", "pgd-at"] and suite["protocol"] == "digits-linf"
    method_source = (pkg / "src/fancy_kd/method.py").read_text()
    assert "from ." not in method_source and 'name = "fancy"' in method_source  # loadable as a loose file
    assert (pkg / "tests/conftest.py").read_text().endswith('pytest_plugins = ["rkdbench.pytest_plugin"]\n')
    tests_source = (pkg / "tests/test_method.py").read_text()
    for fixture in ("rkdbench_register", "rkdbench_contract", "rkdbench_step", "rkdbench_cell"):
        assert f"{fixture}(" in tests_source, fixture  # the generated tests use the pytest plugin's fixtures
    readme = (pkg / "README.md").read_text()
    for command in ("pip install -e .", "pytest", "rkdbench run suite.toml", "--plugins-dir src/fancy_kd"):
        assert command in readme

    # The generated tests, as a user runs them (`pytest` in the package; its pyproject puts src/ on the path).
    # The package is not pip-installed here (no network builds in tests), so its registration test must skip,
    # saying why; the two hand-computed-value tests and the three through the fixtures (contract on random logits,
    # one engine step, one tiny cell with a teacher built small) must pass.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=pkg,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed, 1 skipped" in done.stdout, done.stdout
    assert "fancy-kd is not pip-installed" in done.stdout


def test_scaffolded_method_reaches_the_leaderboard_via_plugins_dir(tmp_path, teacher_dir, unload_plugins_dir, capsys):
    assert cli("new-plugin", "tiny-kd", "--dir", str(tmp_path)) == 0
    pkg = tmp_path / "tiny-kd"
    loose = str(pkg / "src" / "tiny_kd")
    # The generated suite is valid (two cells); the training run uses one cell on cnn-tiny to stay quick.
    assert cli("--plugins-dir", loose, "run", str(pkg / "suite.toml"), "--dry-run") == 0
    assert "tiny-kd / cnn-small" in capsys.readouterr().out
    suite = tmp_path / "only.toml"
    suite.write_text(
        '[suite]\nname = "only"\nprotocol = "digits-linf"\nmethods = ["tiny-kd"]\n'
        'students = ["cnn-tiny"]\nseeds = [0]\n'
    )
    results = tmp_path / "results"
    assert (
        cli(
            "--plugins-dir",
            loose,
            "run",
            str(suite),
            *TINY,
            "--results",
            str(results),
            "--model-dir",
            str(teacher_dir),
            "--quiet",
        )
        == 0
    )
    _, [run] = runs_of(results)
    assert run.info.status == "FINISHED" and run.data.tags["rkdbench.method"] == "tiny-kd"
    assert {"train.loss", "train.kl_adv", "train.kl_nat", "test.aa_acc"} <= set(run.data.metrics)  # its parts logged
    capsys.readouterr()

    assert cli("leaderboard", "--results", str(results), "--format", "csv") == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.method_variant) == ["tiny-kd"]


def test_existing_folder_and_bad_names_are_one_line_errors(tmp_path, capsys):
    assert cli("new-plugin", "again", "--dir", str(tmp_path)) == 0
    before = sorted(p.as_posix() for p in (tmp_path / "again").rglob("*"))
    capsys.readouterr()
    assert cli("new-plugin", "again", "--dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert sorted(p.as_posix() for p in (tmp_path / "again").rglob("*")) == before  # nothing overwritten

    for bad, suggestion in (("My KD!", "'my-kd'"), ("2fast", "'fast'"), ("a--b", "'a-b'")):
        assert cli("new-plugin", bad, "--dir", str(tmp_path)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a valid plugin name" in err and f"try {suggestion}" in err, err
        assert not (tmp_path / bad).exists()
    assert cli("new-plugin", "json", "--dir", str(tmp_path)) == 2  # would shadow the stdlib module
    assert "shadow" in capsys.readouterr().err
    assert cli("new-plugin", "mine", "--dir", str(tmp_path), "--method", "rslad") == 2  # taken by a built-in
    assert "already registered" in capsys.readouterr().err
    assert not Path(tmp_path / "mine").exists()
