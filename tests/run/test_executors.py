"""Executors are components: the built-ins come from the registry like a third party's, `--executor`'s choices and
each executor's options are made from it, an option of another executor and an unknown executor are one line
(exit 2, nothing run), the settings file's `[executor.NAME]` table sets defaults the command line overrides, and a
third-party executor loaded with `--plugins-dir` runs a suite with no core edit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rkdbench.config import load_suite
from rkdbench.errors import ConfigError, UserError
from rkdbench.plugins import get_registry
from rkdbench.run.executor import Executor, build_executor

BATCH = """
from dataclasses import dataclass

from rkdbench import Executor, at_least, executor_option, hookimpl, run_cells
from pathlib import Path

LOG = Path({log!r})


@dataclass(frozen=True)
class BatchOptions:
    batch: int = executor_option(4, "With --executor batch: cells per batch.", rule=at_least(1))


class Batch(Executor):
    name = "batch"
    description = "this process, in batches"
    Options = BatchOptions

    def run(self, cells, tracker, options, prepare):
        prepare(cells, tracker, options)
        outcomes = []
        for i in range(0, len(cells), self.options.batch):
            LOG.open("a").write(f"batch of {{len(cells[i : i + self.options.batch])}}\\n")
            outcomes += run_cells(cells[i : i + self.options.batch], tracker, options)
        return outcomes


@hookimpl
def register_executors(register):
    register(Batch)
"""


def rkdbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "rkdbench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=600)


def suite_file(tmp_path: Path, seeds: list[int]) -> str:
    path = tmp_path / "s.toml"
    path.write_text(
        f'[suite]\nname = "s"\nprotocol = "digits-linf"\nmethods = ["pgd-at"]\nstudents = ["cnn-tiny"]\n'
        f"seeds = {json.dumps(seeds)}\n"
    )
    return str(path)


def test_the_built_in_executors_are_registered_components():
    registry = get_registry()
    assert {"serial", "local", "ray"} <= set(registry.names("executor"))
    for name in ("serial", "local", "ray"):
        component = registry.get("executor", name)
        assert issubclass(component.obj, Executor) and component.dist == "rkdbench"


def test_an_option_of_another_executor_is_refused_naming_both():
    with pytest.raises(UserError, match=r"^--workers is an option of --executor local, not of --executor ray"):
        build_executor("ray", {"workers": 2})


def test_options_are_typed_and_checked():
    assert build_executor("local", {"workers": 3}).options.workers == 3
    with pytest.raises(ConfigError, match="workers"):
        build_executor("local", {"workers": "three"})
    with pytest.raises(ConfigError, match=r"--workers = 0 is not allowed; allowed: an integer >= 1"):
        build_executor("local", {"workers": 0})


def test_the_settings_file_sets_defaults_the_command_line_overrides(tmp_path, monkeypatch):
    settings = tmp_path / "config.toml"
    settings.write_text("[executor.local]\nworkers = 2\n")
    monkeypatch.setenv("RKDBENCH_CONFIG", str(settings))
    assert build_executor("local").options.workers == 2
    assert build_executor("local", {"workers": 1}).options.workers == 1
    settings.write_text("[executor.local]\nworkerz = 2\n")
    with pytest.raises(ConfigError, match=r"config.toml: \[executor.local\] workerz: no such option.*workers"):
        build_executor("local")
    settings.write_text("[executor.slrum]\npartition = 'gpu'\n")
    with pytest.raises(ConfigError, match=r"\[executor.slrum\] names no executor"):
        build_executor("local")


def test_bad_executor_choices_are_one_line_and_run_nothing(tmp_path):
    suite = suite_file(tmp_path, [0])
    results = tmp_path / "results"
    unknown = rkdbench("run", suite, "--results", str(results), "--executor", "lokal")
    assert unknown.returncode == 2 and "'lokal' is not an executor" in unknown.stderr and "local" in unknown.stderr
    foreign = rkdbench("run", suite, "--results", str(results), "--executor", "ray", "--workers", "2")
    assert foreign.returncode == 2
    assert foreign.stderr.strip().splitlines()[-1] == (
        "rkdbench: error: --workers is an option of --executor local, not of --executor ray (which takes --address)"
    )
    assert not results.exists()


def test_a_plugins_dir_executor_runs_a_suite_with_no_core_edit(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    log = tmp_path / "batches.log"
    (folder / "batch_executor.py").write_text(BATCH.format(log=str(log)))
    helped = rkdbench("--plugins-dir", str(folder), "run", "--help")
    assert "--executor [batch|local|ray|serial" in " ".join(helped.stdout.split()) and "--batch" in helped.stdout
    listed = rkdbench("--plugins-dir", str(folder), "plugins", "--json")
    assert {"kind": "executor", "name": "batch"}.items() <= next(
        r for r in json.loads(listed.stdout) if r["name"] == "batch"
    ).items()
    suite = suite_file(tmp_path, [0, 1, 2])
    tiny = ["--set", "train.epochs=1", "--set", "eval.n_examples=4", "--set", "train.val_pgd_steps=1"]
    pgd_only = ["--set", 'eval.attacks={pgd={attack="pgd",steps=1,step_size=0.25}}']
    args = ["--plugins-dir", str(folder), "run", suite, "--results", str(tmp_path / "r"), *tiny, *pgd_only]
    done = rkdbench(*args, "--executor", "batch", "--batch", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert [c["status"] for c in json.loads(done.stdout)["cells"]] == ["finished"] * 3
    assert log.read_text().splitlines() == ["batch of 2", "batch of 1"]
    assert len(load_suite(suite).seeds) == 3
