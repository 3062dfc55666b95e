"""End to end on a tiny budget: the CLI trains, evaluates (PGD-20 + AutoAttack on a few points), records
MLflow runs and builds the leaderboard; reruns skip finished cells; a killed cell resumes in the same run
with the same numbers as an uninterrupted one; a failing cell is recorded and the suite goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import rkdbench
from rkdbench.cli import main
from rkdbench.tracking import tracking_uri

pytestmark = pytest.mark.slow

TINY = ["--set", "train.epochs=2", "--set", "eval.n_examples=8", "--set", "train.val_pgd_steps=2"]


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def runs_of(results: Path):
    client = MlflowClient(tracking_uri(results))
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments, filter_string="tags.`rkdbench.kind` = 'cell'")


def suite_file(tmp_path: Path, methods: list[str], name: str = "mini") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[suite]\nname = "{name}"\nprotocol = "digits-linf"\nmethods = {methods!r}\n'
        f'students = ["cnn-tiny"]\nseeds = [0]\n'.replace("'", '"')
    )
    return str(path)


def test_quick_suite_end_to_end_then_skip(tmp_path, teacher_dir, capsys):
    results = tmp_path / "results"
    code = cli("run", "digits-quick", *TINY, "--results", str(results), "--model-dir", str(teacher_dir))
    assert code == 0
    client, runs = runs_of(results)
    assert sorted(r.data.tags["rkdbench.method"] for r in runs) == ["ard", "pgd-at", "rslad"]
    for run in runs:
        m, tags, params = run.data.metrics, run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["rkdbench.protocol"] == "digits-linf" and len(tags["rkdbench.cell"]) == 16
        assert params["protocol.train.epochs"] == "2" and params["protocol.eval.n_examples"] == "8"
        assert "best_val.aa_acc" not in m  # the quick suite evaluates the last checkpoint only
        for key in ("test.clean_acc", "test.pgd20_acc", "test.aa_acc"):
            assert 0.0 <= m[key] <= 1.0
        assert m["test.worst_acc"] <= min(m["test.aa_acc"], m["test.pgd20_acc"]) <= m["test.clean_acc"]
        if m["test.clean_acc"] > 0:  # AutoAttack's per-stage accuracies, captured from its logger
            assert m["test.aa.apgd-ce_acc"] >= m["test.aa_acc"] - 1e-9
        assert m["test.n_examples"] == 8
        assert -1.0 <= m["spec.clean.mean_best"] <= 1.0 and -1.0 <= m["spec.adv.mean_best"] <= 1.0
        history = client.get_metric_history(run.info.run_id, "val.pgd_acc")
        assert sorted(h.step for h in history) == [0, 1]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.toml", "per_example.parquet", "checkpoints"} <= artifacts
        local = client.download_artifacts(run.info.run_id, "per_example.parquet", str(tmp_path / run.info.run_id))
        per_example = pd.read_parquet(local)
        last = per_example[per_example.selection == "last"]
        assert len(last) == 8 and last["aa"].mean() == pytest.approx(m["test.aa_acc"])
        # diagnostics: worst-class and transferability (pgd-at, teacher-free, against the protocol's teacher)
        assert m["test.worst_class_aa_acc"] <= m["test.aa_acc"] and "test.worst_class_aa_class" in m
        assert "test.transferability.aa" in m and "test.transferability.pgd20" in m
        assert "rkdbench.transferability" not in tags  # a teacher was available for every cell
        fooled = last[last["aa.student_pred"] != last["y"]]
        if len(fooled):
            assert m["test.transferability.aa"] == pytest.approx((fooled["aa.teacher_pred"] != fooled["y"]).mean())
    capsys.readouterr()

    # the leaderboard equals the runs' metrics (one seed: mean = the value)
    assert cli("leaderboard", "--results", str(results), "--format", "csv") == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(table) == 3
    for run in runs:
        row = table[table.method_variant == run.data.tags["rkdbench.method"]].iloc[0]
        assert row["aa_mean"] == pytest.approx(100 * run.data.metrics["test.aa_acc"], abs=1e-3)
        assert row["n"] == 1
        assert row["spec.clean.mean_best_mean"] == pytest.approx(run.data.metrics["spec.clean.mean_best"], abs=1e-4)
        assert row["worst_class_aa_mean"] == pytest.approx(100 * run.data.metrics["test.worst_class_aa_acc"], abs=1e-3)
        assert row["precision"] == "fp32"
    assert list(table["aa_mean"]) == sorted(table["aa_mean"], reverse=True)

    # a rerun skips every finished cell: same runs, nothing new
    assert cli("run", "digits-quick", *TINY, "--results", str(results), "--model-dir", str(teacher_dir)) == 0
    _, again = runs_of(results)
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in runs)
    assert "skip" in capsys.readouterr().out


KILLER = """
import os, signal
import rkdbench

@rkdbench.hookimpl
def epoch_finished(run, epoch, metrics):
    if os.environ.get("RKDBENCH_TEST_KILL_AFTER_EPOCH") == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)
"""


# Not how long a run should take: a guard that ends a test whose child hangs (a loaded machine only slows them)
HANG_GUARD_S = 3600


def _subprocess_run(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    """`rkdbench ARGS` in a child with one torch thread, like the tests' own process: with the machine's two,
    OpenMP threads spin against each other and against other work (measured on a loaded 2-core machine: the
    resume below took 4 to 6 times the CPU time of one thread and passed the 600 s this waited before)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "rkdbench.cli", *args], env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )


# rslad: the seed contract; peeraid: a method-owned peer network with its own optimizer; fair-ard: method state
# (class weights) and a per-method optimizer (Nesterov)
@pytest.mark.parametrize("method", ["rslad", "peeraid", "fair-ard"])
def test_killed_cell_resumes_in_the_same_run_with_the_same_numbers(tmp_path, teacher_dir, method):
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "killer.py").write_text(KILLER)
    suite = suite_file(tmp_path, [method])
    budget = [
        "--set",
        "train.epochs=3",
        "--set",
        "eval.n_examples=6",
        "--set",
        "train.val_pgd_steps=2",
        "--model-dir",
        str(teacher_dir),
        "--quiet",
    ]
    results = tmp_path / "killed"
    args = ["--plugins-dir", str(plugins_dir), "run", suite, "--results", str(results), *budget]
    first = _subprocess_run(args, {"RKDBENCH_TEST_KILL_AFTER_EPOCH": "0"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    _, [interrupted] = runs_of(results)
    assert interrupted.info.status == "RUNNING"
    [cell_dir] = (results / "cells").iterdir()
    checkpoint = torch.load(cell_dir / "last.pt", weights_only=True)
    assert checkpoint["epochs_done"] == 1 and checkpoint["run_id"] == interrupted.info.run_id

    second = _subprocess_run(args, {})
    assert second.returncode == 0, second.stderr
    client, [resumed] = runs_of(results)
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    steps = sorted(h.step for h in client.get_metric_history(resumed.info.run_id, "val.pgd_acc"))
    assert steps == [0, 1, 2]

    straight = tmp_path / "straight"
    third = _subprocess_run(["run", suite, "--results", str(straight), *budget], {})
    assert third.returncode == 0, third.stderr
    _, [reference] = runs_of(straight)
    for key in ("test.clean_acc", "test.pgd20_acc", "test.aa_acc", "train.loss"):
        assert resumed.data.metrics[key] == reference.data.metrics[key], key  # bit-for-bit resume

    board = _subprocess_run(["leaderboard", "--results", str(results), "--format", "csv"], {})
    assert board.returncode == 0 and len(pd.read_csv(__import__("io").StringIO(board.stdout))) == 1


class Boom(rkdbench.Method):
    name = "boom"
    needs = frozenset({"s_adv"})

    def attack_objective(self, out, y):
        return out.s_adv.sum(1)

    def loss(self, out, y, progress):
        raise RuntimeError("boom: deliberately broken method")


class BoomPlugin:
    @rkdbench.hookimpl
    def register_methods(self, register):
        register(Boom)


def test_failed_cell_is_recorded_and_the_suite_goes_on(tmp_path, teacher_dir, register_plugin, capsys):
    register_plugin(BoomPlugin(), "boom-plugin")
    results = tmp_path / "results"
    code = cli(
        "run",
        suite_file(tmp_path, ["boom", "pgd-at"]),
        *TINY,
        "--results",
        str(results),
        "--model-dir",
        str(teacher_dir),
    )
    assert code == 1
    client, runs = runs_of(results)
    status = {r.data.tags["rkdbench.method"]: r for r in runs}
    assert status["boom"].info.status == "FAILED" and status["pgd-at"].info.status == "FINISHED"
    trace = client.download_artifacts(status["boom"].info.run_id, "traceback.txt", str(tmp_path))
    assert "deliberately broken method" in Path(trace).read_text()
    assert "cell failed: boom" in capsys.readouterr().err


def test_unreachable_tracking_store_fails_before_training(tmp_path, teacher_dir, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    results = tmp_path / "results"
    code = cli("run", "digits-quick", *TINY, "--results", str(results), "--model-dir", str(teacher_dir))
    assert code == 2
    assert "unreachable" in capsys.readouterr().err
    assert not (results / "cells").exists()


def test_missing_teacher_names_the_path_and_the_build_command(tmp_path, capsys):
    code = cli("run", "digits-quick", *TINY, "--results", str(tmp_path / "r"), "--model-dir", str(tmp_path / "empty"))
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty" / "digits" / "Linf" / "rkdbench-cnn-large.pt") in err
    assert "rkdbench teachers build digits/Linf/rkdbench-cnn-large" in err
