"""End to end on a tiny budget: the CLI trains, evaluates (PGD-20 + AutoAttack on a few points), records
MLflow runs and builds the leaderboard; reruns skip finished cells; a killed cell resumes in the same run
with the same numbers as an uninterrupted one; a failing cell is recorded and the suite goes on."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

import rkdbench
from support.cli import HANG_GUARD_S, TINY, cli, cli_started, cli_subprocess, runs_of, suite_file

pytestmark = pytest.mark.slow


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


# rslad: the seed contract; peeraid: a method-owned peer network with its own optimizer; fair-ard: method state
# (class weights) and a per-method optimizer (Nesterov)
@pytest.mark.parametrize("method", ["rslad", "peeraid", "fair-ard"])
def test_killed_cell_resumes_in_the_same_run_with_the_same_numbers(tmp_path, teacher_dir, method, capsys, request):
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
    straight = tmp_path / "straight"
    reference_run = cli_started("run", suite, "--results", str(straight), *budget)  # beside the killed and resumed
    request.addfinalizer(reference_run.kill)  # a no-op once it has ended
    args = ["--plugins-dir", str(plugins_dir), "run", suite, "--results", str(results), *budget]
    first = cli_subprocess(*args, env={"RKDBENCH_TEST_KILL_AFTER_EPOCH": "0"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    _, [interrupted] = runs_of(results)
    assert interrupted.info.status == "RUNNING"
    [cell_dir] = (results / "cells").iterdir()
    checkpoint = torch.load(cell_dir / "last.pt", weights_only=True)
    assert checkpoint["epochs_done"] == 1 and checkpoint["run_id"] == interrupted.info.run_id

    second = cli_subprocess(*args)
    assert second.returncode == 0, second.stderr
    client, [resumed] = runs_of(results)
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    steps = sorted(h.step for h in client.get_metric_history(resumed.info.run_id, "val.pgd_acc"))
    assert steps == [0, 1, 2]

    _, errors = reference_run.communicate(timeout=HANG_GUARD_S)
    assert reference_run.returncode == 0, errors
    _, [reference] = runs_of(straight)
    for key in ("test.clean_acc", "test.pgd20_acc", "test.aa_acc", "train.loss"):
        assert resumed.data.metrics[key] == reference.data.metrics[key], key  # bit-for-bit resume

    capsys.readouterr()
    assert cli("leaderboard", "--results", str(results), "--format", "csv") == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 1


def test_a_cell_interrupted_after_its_final_metrics_logs_each_of_them_once(tmp_path, teacher_dir, monkeypatch):
    """Ctrl-C between the final metrics and FINISHED (the window the random-kill test found): the cell is KILLED,
    the rerun resumes it, and every final metric has one value in MLflow, the first one."""
    from rkdbench.tracking.journal import JournaledTracker

    finish = JournaledTracker.finish
    interrupted = []

    def interrupted_once(self, run_id, status):
        if status == "FINISHED" and not interrupted:
            interrupted.append(run_id)
            raise KeyboardInterrupt
        finish(self, run_id, status)

    monkeypatch.setattr(JournaledTracker, "finish", interrupted_once)
    suite = suite_file(tmp_path, ["pgd-at"])
    args = ["run", suite, *TINY, "--results", str(tmp_path / "results"), "--model-dir", str(teacher_dir), "--quiet"]
    assert cli(*args) == 130
    client, [killed] = runs_of(tmp_path / "results")
    assert killed.info.status == "KILLED" and "test.aa_acc" in killed.data.metrics
    assert cli(*args) == 0
    client, [run] = runs_of(tmp_path / "results")
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    finals = [key for key in run.data.metrics if key.startswith("test.")]
    assert finals
    for key in finals:
        history = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(2, killed.data.metrics[key])], key


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
