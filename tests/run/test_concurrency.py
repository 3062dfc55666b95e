"""Many workers, one store: the cell lease, the store lock, the journal's idempotent replay, each cell key
counted once, and real concurrent `rkdbench run` processes (on a fresh sqlite store and on a real `mlflow
server`), a tracking server that goes away mid-cell, and a worker SIGKILLed while it holds a cell."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import rkdbench
from rkdbench.run.lease import CellLease
from rkdbench.tracking import Tracker, tracking_uri
from rkdbench.tracking.journal import JournaledTracker
from support.cli import cli, runs_of, suite_file
from support.mlflow_server import MlflowServer

TINY = ["--set", "train.epochs=2", "--set", "eval.n_examples=6", "--set", "train.val_pgd_steps=2"]

COUNTER = """
import os
import rkdbench

@rkdbench.hookimpl
def run_started(run):
    with open(os.environ["RKDBENCH_TEST_STARTS"], "a") as fh:
        fh.write(f"{run.cell.key} {run.run_id} {os.getpid()}\\n")
"""

HOLD_THEN_DIE = """
import os, signal, time
from pathlib import Path
import rkdbench

@rkdbench.hookimpl
def epoch_finished(run, epoch, metrics):
    signal_dir = os.environ.get("RKDBENCH_TEST_DIE_WHEN")
    if signal_dir and epoch == 0:
        Path(signal_dir, "holding").write_text(str(os.getpid()))
        deadline = time.monotonic() + 300
        while not Path(signal_dir, "die").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def plugin_dir(folder: Path, source: str, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return folder


def worker_command(plugins: Path, suite: str, results: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rkdbench.cli",
        "--plugins-dir",
        str(plugins),
        "run",
        suite,
        "--results",
        str(results),
        "--quiet",
        *TINY,
    ]


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RKDBENCH_WAIT_POLL_SECONDS": "1", **extra}


# --- the lease and the store lock: real processes --------------------------------------------------------------

HOLDER = """
import sys, time
from rkdbench.run.lease import CellLease
lease = CellLease(sys.argv[1])
print("held" if lease.acquire() else "busy", flush=True)
time.sleep(600)
"""


def test_lease_is_exclusive_across_processes_and_freed_when_its_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lease = CellLease(tmp_path)
        assert not lease.acquire() and not lease.held
        assert lease.holder().split(" since ")[0].endswith(f":{holder.pid}")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        started = time.monotonic()
        assert lease.acquire() and lease.held  # the OS released the dead holder's lock at once
        assert time.monotonic() - started < 1.0
        assert lease.holder().split(" since ")[0].endswith(f":{os.getpid()}")
        second = subprocess.run(
            [sys.executable, "-c", HOLDER.replace("time.sleep(600)", ""), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.stdout.strip() == "busy"
        lease.release()
        assert not lease.held
    finally:
        holder.kill()
        holder.wait()


OPENER = """
import sys, time
from rkdbench.tracking import Tracker
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
tracker = Tracker(sys.argv[1])
tracker.check_reachable()
print(tracker.experiment_id("same-name"))
"""


def test_processes_opening_a_fresh_store_at_once_create_it_once(tmp_path):
    results = tmp_path / "fresh"
    start_at = str(time.time() + 8)  # every process imports first, then all open the store at the same instant
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(results), start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err[-800:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, created once
    client = MlflowClient(tracking_uri(results))
    assert [e.name for e in client.search_experiments() if e.name == "same-name"] == ["same-name"]


def test_store_upgrade_creates_then_reports_up_to_date_and_refuses_a_server(tmp_path, capsys, monkeypatch):
    results = tmp_path / "store"
    assert cli("store", "upgrade", "--results", str(results)) == 0
    assert "created sqlite:///" in capsys.readouterr().out
    assert cli("store", "upgrade", "--results", str(results)) == 0
    assert "is up to date" in capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert cli("store", "upgrade", "--results", str(results)) == 2
    assert "migrates its own database" in capsys.readouterr().err


# --- the journal ---------------------------------------------------------------------------------------------------


def test_journal_replay_after_a_crash_between_delivery_and_record_logs_nothing_twice(tmp_path):
    tracker = Tracker(tmp_path / "results")
    experiment = tracker.experiment_id("journal")
    run_id = tracker.create_run(experiment, "cell", {"rkdbench.kind": "cell", "rkdbench.cell": "k"})
    cell_dir = tmp_path / "results" / "cells" / "k"
    journaled = JournaledTracker(tracker, cell_dir)
    journaled.log_params(run_id, {"a": 1})
    for epoch in range(3):
        journaled.log_metrics(run_id, {"val.pgd_acc": 0.5, "train.loss": 1.0 + epoch}, step=epoch)
    assert journaled.journal.delivered == 4 and not journaled.journal.pending
    # a crash after the server got the last two entries, before their delivery was recorded
    journaled.journal.mark_delivered(2)
    replay = JournaledTracker(tracker, cell_dir)
    assert len(replay.journal.pending) == 2
    replay.finish(run_id, "FINISHED")
    assert replay.journal.delivered == 5
    history = tracker.client.get_metric_history(run_id, "val.pgd_acc")
    assert sorted(m.step for m in history) == [0, 1, 2]  # each epoch once, although entries were sent twice
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
    # a kill mid-append leaves a partial line: it is dropped, never delivered
    with (cell_dir / "journal.jsonl").open("ab") as fh:
        fh.write(b'{"op": "metr')
    again = JournaledTracker(tracker, cell_dir)
    assert len(again.journal.entries) == 5 and again.deliver()


def test_final_metrics_journaled_before_a_kill_are_not_logged_again_by_the_resumed_cell(tmp_path):
    tracker = Tracker(tmp_path / "results")
    run_id = tracker.create_run(tracker.experiment_id("once"), "cell", {"rkdbench.cell": "k"})
    cell_dir = tmp_path / "results" / "cells" / "k"
    first = JournaledTracker(tracker, cell_dir)
    first.log_metrics(run_id, {"train.loss": 1.0}, step=1)
    first.log_metrics_once(run_id, {"test.clean_acc": 0.5, "test.aa_acc": 0.25}, step=2)
    first.finish(run_id, "KILLED")  # Ctrl-C after the final metrics, before FINISHED
    resumed = JournaledTracker(tracker, cell_dir)  # the next worker, reading the journal back
    resumed.log_metrics_once(run_id, {"test.clean_acc": 0.75, "test.aa_acc": 0.25, "cost.passes": 3.0}, step=2)
    resumed.log_metrics_once(run_id, {"train.loss": 2.0}, step=1)  # another step: its own keys
    history = {
        key: [(m.step, m.value) for m in tracker.client.get_metric_history(run_id, key)]
        for key in ("test.clean_acc", "test.aa_acc", "cost.passes", "train.loss")
    }
    assert history == {
        "test.clean_acc": [(2, 0.5)],  # the first number stays
        "test.aa_acc": [(2, 0.25)],
        "cost.passes": [(2, 3.0)],  # a key the kill kept from the journal is logged
        "train.loss": [(1, 1.0)],
    }
    assert resumed.journal.metric_keys(run_id, 2) == {"test.clean_acc", "test.aa_acc", "cost.passes"}


def test_journal_keeps_entries_while_the_store_is_away_and_delivers_them_later(tmp_path):
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        tracker = Tracker(tmp_path / "results")
        tracker.uri = server.uri
        run_id = tracker.create_run(tracker.experiment_id("away"), "cell", {"rkdbench.cell": "k"})
        journaled = JournaledTracker(tracker, tmp_path / "cell")
        journaled.log_metrics(run_id, {"m": 0.0}, step=0)
        server.stop()
        started = time.monotonic()
        journaled.log_metrics(run_id, {"m": 1.0}, step=1)
        assert time.monotonic() - started < 30  # short client retries: training is not blocked for minutes
        assert len(journaled.journal.pending) == 1 and journaled.last_error
        server.start()
        journaled.finish(run_id, "FINISHED")
        assert journaled.deliver() and not journaled.journal.pending
        client = MlflowClient(server.uri)
        assert sorted(m.step for m in client.get_metric_history(run_id, "m")) == [0, 1]
        assert client.get_run(run_id).info.status == "FINISHED"
    finally:
        server.stop()


# --- counting each cell key once ------------------------------------------------------------------------------


@pytest.mark.slow
def test_leaderboard_over_duplicate_runs_counts_each_cell_once_and_says_how_many_were_ignored(tmp_path, capsys):
    results = tmp_path / "results"
    suite = suite_file(tmp_path, seeds=[0, 1])
    assert cli("run", suite, *TINY, "--results", str(results), "--quiet") == 0
    client, runs = runs_of(tracking_uri(results))
    assert len(runs) == 2
    # what an older version left: a second FINISHED run of seed 0 (older start) and an unfinished one
    original = next(r for r in runs if r.data.tags["rkdbench.seed"] == "0")
    metrics = {k: v - 0.5 for k, v in original.data.metrics.items()}
    for status in ("FINISHED", "RUNNING"):
        duplicate = client.create_run(
            original.info.experiment_id, tags=original.data.tags, start_time=original.info.start_time - 1000
        )
        client.log_batch(duplicate.info.run_id, metrics=[rkdbench_metric(k, v) for k, v in metrics.items()])
        client.log_artifact(
            duplicate.info.run_id, str(results / "cells" / original.data.tags["rkdbench.cell"] / "per_example.parquet")
        )
        client.set_terminated(duplicate.info.run_id, status)
    capsys.readouterr()
    assert cli("leaderboard", "--results", str(results), "--format", "csv", "--no-log-to-mlflow") == 0
    out = capsys.readouterr()
    [row] = pd.read_csv(io.StringIO(out.out)).to_dict("records")
    assert row["n"] == 2  # two seeds, not three
    expected = sum(100 * r.data.metrics["test.aa_acc"] for r in runs) / 2
    assert row["aa_mean"] == pytest.approx(expected, abs=1e-3)  # the newest FINISHED run of seed 0 counts
    assert "1 duplicate run of already counted cells ignored" in out.err
    assert cli("leaderboard", "--results", str(results), "--format", "json", "--no-log-to-mlflow") == 0
    assert '"ignored_runs": 1' in capsys.readouterr().out
    # compare says when a run it is given is an ignored duplicate
    assert cli("compare", duplicate.info.run_id, original.info.run_id, "--results", str(results)) == 0
    assert f"run {duplicate.info.run_id} is an ignored duplicate" in capsys.readouterr().out
    # a rerun skips both cells (the counted run of seed 0 is FINISHED) and its summary reports the duplicates
    assert cli("run", suite, *TINY, "--results", str(results), "--json") == 0
    summary = __import__("json").loads(capsys.readouterr().out)
    assert [c["status"] for c in summary["cells"]] == ["skipped", "skipped"] and summary["ignored_runs"] == 2
    assert original.info.run_id in [c["run_id"] for c in summary["cells"]]


def rkdbench_metric(key: str, value: float):
    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)


# --- real workers -----------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "mlflow-server", "rkdbench-server-postgresql"])
def store_env(request, tmp_path) -> dict[str, str]:
    """The environment that points workers at a store: the results folder's sqlite file, a real `mlflow server`
    on sqlite, or `rkdbench server` on a real PostgreSQL (tests/support/services.py: skipped locally without one, a
    failure under CI=1)."""
    if request.param == "sqlite":
        return {}
    if request.param == "mlflow-server":
        return {"MLFLOW_TRACKING_URI": request.getfixturevalue("mlflow_server").uri}
    return {"MLFLOW_TRACKING_URI": request.getfixturevalue("tracking_server").url}


@pytest.mark.slow
def test_three_workers_started_at_once_on_a_fresh_store_train_each_cell_once(tmp_path, store_env):
    plugins = plugin_dir(tmp_path / "plugins", COUNTER, "counter")
    suite = suite_file(tmp_path, seeds=[0, 1, 2])
    results = tmp_path / "results"
    starts = tmp_path / "starts.txt"
    env = child_env(RKDBENCH_TEST_STARTS=str(starts), **store_env)
    workers = [
        subprocess.Popen(
            worker_command(plugins, suite, results), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err[-1500:] for _, err in outputs]
    uri = store_env.get("MLFLOW_TRACKING_URI") or tracking_uri(results)
    _, runs = runs_of(uri)
    keys = [r.data.tags["rkdbench.cell"] for r in runs]
    assert len(keys) == 3 and len(set(keys)) == 3  # one run per cell
    assert all(r.info.status == "FINISHED" for r in runs)
    started = [line.split()[0] for line in starts.read_text().splitlines()]
    assert sorted(started) == sorted(keys)  # each cell trained by exactly one worker, once
    assert len({line.split()[2] for line in starts.read_text().splitlines()}) >= 2  # the work was shared


@pytest.mark.slow
def test_workers_option_runs_cells_side_by_side_and_counts_each_once(tmp_path, capsys):
    plugins = plugin_dir(tmp_path / "plugins", COUNTER, "counter")
    suite = suite_file(tmp_path, seeds=[0, 1, 2])
    results = tmp_path / "results"
    starts = tmp_path / "starts.txt"
    env = child_env(RKDBENCH_TEST_STARTS=str(starts))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rkdbench.cli",
            "--plugins-dir",
            str(plugins),
            "run",
            suite,
            "--results",
            str(results),
            "--workers",
            "2",
            "--json",
            *TINY,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = __import__("json").loads(done.stdout)
    assert sorted(c["status"] for c in summary["cells"]) == ["finished"] * 3
    assert len({c["key"] for c in summary["cells"]}) == 3 and summary["ignored_runs"] == 0
    pids = [line.split()[2] for line in starts.read_text().splitlines()]
    assert len(pids) == 3 and len(set(pids)) == 2  # two worker processes shared the three cells


@pytest.mark.slow
def test_tracking_server_away_for_the_middle_epochs_loses_no_metric(
    tmp_path, mlflow_server, monkeypatch, register_plugin
):
    class Outage:
        @rkdbench.hookimpl
        def epoch_finished(self, run, epoch, metrics):
            if epoch == 0:
                mlflow_server.stop()
            elif epoch == 2:
                mlflow_server.start()

    register_plugin(Outage(), "outage")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)  # restored after the test: the journal sets them for servers
    results = tmp_path / "results"
    assert (
        cli(
            "run",
            suite_file(tmp_path, seeds=[0]),
            "--set",
            "train.epochs=4",
            "--set",
            "eval.n_examples=6",
            "--set",
            "train.val_pgd_steps=2",
            "--results",
            str(results),
            "--quiet",
        )
        == 0
    )
    client, [run] = runs_of(mlflow_server.uri)
    assert run.info.status == "FINISHED"
    for key in ("val.pgd_acc", "train.loss", "val.clean_acc"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [0, 1, 2, 3], key  # every epoch, exactly once
    assert "test.aa_acc" in run.data.metrics


@pytest.mark.slow
def test_server_down_at_the_end_leaves_the_cell_undelivered_then_a_rerun_logs_it_without_training(
    tmp_path, mlflow_server, monkeypatch, register_plugin, capsys
):
    class LateOutage:
        armed = True

        @rkdbench.hookimpl
        def epoch_finished(self, run, epoch, metrics):
            if epoch == 1 and LateOutage.armed:
                LateOutage.armed = False
                mlflow_server.stop()

    class Starts:
        count = 0

        @rkdbench.hookimpl
        def run_started(self, run):
            Starts.count += 1

    register_plugin(LateOutage(), "late-outage")
    register_plugin(Starts(), "starts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    results = tmp_path / "results"
    suite = suite_file(tmp_path, seeds=[0])
    assert cli("run", suite, *TINY, "--results", str(results), "--quiet") == 1
    assert "cell not logged" in capsys.readouterr().err
    mlflow_server.start()
    client, [run] = runs_of(mlflow_server.uri)
    assert run.info.status == "RUNNING"  # not FINISHED while its journal is not delivered
    assert cli("run", suite, *TINY, "--results", str(results), "--quiet") == 0
    assert Starts.count == 1  # the rerun delivered the journal; nothing was trained again
    client, [run] = runs_of(mlflow_server.uri)
    assert run.info.status == "FINISHED" and "test.aa_acc" in run.data.metrics
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val.pgd_acc")) == [0, 1]


@pytest.mark.slow
def test_a_worker_killed_while_holding_a_cell_is_taken_over_in_the_same_run(tmp_path):
    plugins = plugin_dir(tmp_path / "plugins", HOLD_THEN_DIE, "hold_then_die")
    plugin_dir(plugins, COUNTER, "counter")
    suite = suite_file(tmp_path, seeds=[0])
    results = tmp_path / "results"
    signals = tmp_path / "signals"
    signals.mkdir()
    starts = tmp_path / "starts.txt"
    command = [
        *worker_command(plugins, suite, results)[: -len(TINY)],
        "--set",
        "train.epochs=3",
        "--set",
        "eval.n_examples=6",
        "--set",
        "train.val_pgd_steps=2",
    ]
    command.remove("--quiet")
    holder = subprocess.Popen(
        command,
        env=child_env(RKDBENCH_TEST_STARTS=str(starts), RKDBENCH_TEST_DIE_WHEN=str(signals)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (signals / "holding").exists():
        assert holder.poll() is None and time.monotonic() < deadline, holder.stderr.read()[-1500:]
        time.sleep(0.2)
    waiter = subprocess.Popen(
        command,
        env=child_env(RKDBENCH_TEST_STARTS=str(starts)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in waiter.stdout:  # the second worker finds the cell held and waits for it
        lines.append(line)
        if "waiting for 1 cell held by other workers" in line:
            break
    assert any(" held " in line for line in lines), "".join(lines)
    (signals / "die").touch()
    assert holder.wait(timeout=120) == -signal.SIGKILL
    killed_at = time.monotonic()
    client, [interrupted] = runs_of(tracking_uri(results))
    assert interrupted.info.status == "RUNNING"
    for line in waiter.stdout:
        lines.append(line)
        if " resume " in line:
            took_over = time.monotonic() - killed_at
            break
    assert waiter.wait(timeout=600) == 0, "".join(lines)[-2000:]
    assert took_over < 30  # local filesystem: the lease is free at once; the waiter polls every second
    client, [run] = runs_of(tracking_uri(results))
    assert run.info.run_id == interrupted.info.run_id and run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val.pgd_acc")) == [0, 1, 2]
    pids = [line.split()[2] for line in starts.read_text().splitlines()]
    assert len(pids) == 2 and pids[0] == str(holder.pid) and pids[1] == str(waiter.pid)


def test_counting_keeps_the_newest_finished_run_of_each_cell_key():
    from types import SimpleNamespace

    from rkdbench.tracking.counting import counted_frame, counted_runs, ignored_note

    def run(run_id, cell, status, start):
        return SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, status=status, start_time=start),
            data=SimpleNamespace(tags={"rkdbench.cell": cell} if cell else {}),
        )

    runs = [
        run("old-done", "a", "FINISHED", 1),
        run("new-done", "a", "FINISHED", 3),
        run("newest-running", "a", "RUNNING", 5),
        run("only", "b", "FAILED", 2),
        run("no-key", None, "FINISHED", 9),
    ]
    kept, ignored = counted_runs(runs)
    assert sorted(r.info.run_id for r in kept) == ["new-done", "no-key", "only"] and ignored == 2
    kept, _ = counted_runs([run("r1", "c", "RUNNING", 1), run("r2", "c", "KILLED", 4)])
    assert [r.info.run_id for r in kept] == ["r2"]  # none finished: the newest, the one a rerun resumes
    frame = pd.DataFrame(
        {
            "run_id": ["x", "y", "z"],
            "tags.rkdbench.cell": ["k", "k", "j"],
            "status": ["FINISHED"] * 3,
            "start_time": pd.to_datetime([2, 1, 3], unit="s", utc=True),
        }
    )
    kept_frame, ignored_frame = counted_frame(frame)
    assert list(kept_frame.run_id) == ["x", "z"] and list(ignored_frame.run_id) == ["y"]
    assert ignored_note(0) == "" and ignored_note(2).startswith("2 duplicate runs")


def test_shard_still_works_and_says_it_is_deprecated(capsys):
    assert cli("run", "digits-all-quick", "--dry-run", "--shard", "1/2") == 0
    captured = capsys.readouterr()
    assert "--shard is deprecated" in captured.err and captured.out.count("\n  ") >= 1


@pytest.mark.slow
def test_server_away_before_a_cell_starts_fails_only_that_cell_and_a_rerun_trains_it(
    tmp_path, mlflow_server, monkeypatch, register_plugin, capsys
):
    class AwayAfterFirstCell:
        armed = True

        @rkdbench.hookimpl
        def run_finished(self, run, result):
            if AwayAfterFirstCell.armed:
                AwayAfterFirstCell.armed = False
                mlflow_server.stop()

    register_plugin(AwayAfterFirstCell(), "away-after-first-cell")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    ):
        monkeypatch.setenv(name, {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}.get(name, "1"))
    results = tmp_path / "results"
    suite = suite_file(tmp_path, seeds=[0, 1])
    assert cli("run", suite, *TINY, "--results", str(results), "--quiet") == 1
    err = capsys.readouterr().err
    assert "cell failed: pgd-at / cnn-tiny / none / seed 1: tracking store http://127.0.0.1" in err
    assert "Traceback" not in err
    mlflow_server.start()
    assert cli("run", suite, *TINY, "--results", str(results), "--quiet") == 0
    _, runs = runs_of(mlflow_server.uri)
    assert sorted(r.data.tags["rkdbench.seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
