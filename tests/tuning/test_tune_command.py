"""`rkdbench tune` end to end on tiny budgets (digits, cnn-tiny, 2 epochs, teacher-free pgd-at and trades, PGD-2 on 8
test points): the test split is never read while trials run (a poisoned test split fails only the selected cells),
every method gets exactly N finished trials, trial 0 is the official configuration, no trial run logs a `test.*`
metric, the selected cells' configurations are the best trials', a restart continues (the selected cells resume) and
a rerun does nothing; with `--workers 2`, a SIGKILLed driver and a SIGKILLed worker lose and double nothing; the
tuned leaderboard view; bad input is one line, exit 2, nothing created; `--dry-run` plans and creates nothing."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

import rkdbench.leaderboard.tuned as tuned_module
import rkdbench.run.train
from rkdbench.cli import main
from rkdbench.data import Splits
from rkdbench.tracking import tracking_uri
from rkdbench.tuning.study import DEFAULTS_ORIGIN, finished_trials, origin

pytestmark = pytest.mark.slow

TINY = [
    "--set",
    "train.epochs=2",
    "--set",
    "train.val_pgd_steps=2",
    "--set",
    "eval.n_examples=8",
    "--set",
    'eval.attacks={pgd={attack="pgd",steps=2,step_size=0.25}}',
    "--set",
    'eval.selections=["last"]',
]
BUDGET = 3


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def suite_file(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(
        '[suite]\nname = "tiny"\nprotocol = "digits-linf"\nmethods = ["pgd-at", "trades"]\n'
        'students = ["cnn-tiny"]\nseeds = [0]\n'
    )
    return str(path)


def runs(results: Path, kind: str) -> list:
    client = MlflowClient(tracking_uri(results))
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`rkdbench.kind` = '{kind}'", max_results=1000)


def studies(results: Path) -> dict[str, optuna.Study]:
    storage = f"sqlite:///{results / 'optuna.db'}"
    return {name: optuna.load_study(study_name=name, storage=storage) for name in optuna.get_all_study_names(storage)}


def assert_exactly_the_budget(results: Path) -> None:
    loaded = studies(results)
    assert len(loaded) == 2
    for study in loaded.values():
        finished = finished_trials(study)
        assert len(finished) == BUDGET and all(t.state == TrialState.COMPLETE for t in finished), study.study_name
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        assert len(complete) == BUDGET  # not one more, whatever was killed and retried
        assert origin(min(finished, key=lambda t: t.number)) == DEFAULTS_ORIGIN


class Poison:
    """A test split that fails any read."""

    def __getitem__(self, _):
        raise AssertionError("the test split was read")

    def __iter__(self):
        raise AssertionError("the test split was read")


def poisoned(protocol, data_dir=None) -> Splits:
    real = LOAD_SPLITS(protocol, data_dir)
    return Splits(real.train, real.val, Poison(), real.num_classes)


LOAD_SPLITS = rkdbench.run.train.load_splits


def test_trials_never_read_the_test_split_then_the_selected_cells_run(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    args = ["tune", suite_file(tmp_path), "--budget", str(BUDGET), *TINY, "--results", str(results)]

    # every read of the test split fails: the trials all finish, the selected cells fail on it (the poison works)
    monkeypatch.setattr(rkdbench.run.train, "load_splits", poisoned)
    assert cli(*args) == 1
    assert capsys.readouterr().err.count("the test split was read") == 2
    assert_exactly_the_budget(results)
    trials = runs(results, "trial")
    assert trials and all(r.info.status == "FINISHED" for r in trials)
    assert not [k for r in trials for k in r.data.metrics if k.startswith("test.")]
    assert {r.data.tags["rkdbench.trial_state"] for r in trials} == {"complete"}
    suite_hash = {r.data.tags["rkdbench.protocol_hash"] for r in trials if r.data.tags["rkdbench.trial"] == "0"}
    zero = [r for r in trials if r.data.tags["rkdbench.trial"] == "0"]
    assert len(zero) == 2 and len(suite_hash) == 1  # trial 0: the suite's protocol itself, the methods' defaults
    for run in zero:
        assert json.loads(run.data.tags["rkdbench.trial_values"])["train.lr"] == 0.05
    trades_zero = next(r for r in zero if r.data.tags["rkdbench.method"] == "trades")
    assert trades_zero.data.params["method.beta"] == "6.0"

    # restart without the poison: no trial runs again; the selected cells resume (in their runs) and finish
    monkeypatch.setattr(rkdbench.run.train, "load_splits", LOAD_SPLITS)
    failed = {r.data.tags["rkdbench.cell"]: r.info.run_id for r in runs(results, "cell")}
    assert cli(*args) == 0
    assert sorted(r.info.run_id for r in runs(results, "trial")) == sorted(r.info.run_id for r in trials)
    cells = runs(results, "cell")
    assert {r.data.tags["rkdbench.cell"]: r.info.run_id for r in cells} == failed
    assert all(r.info.status == "FINISHED" and "test.pgd_acc" in r.data.metrics for r in cells)

    # the selected cells' configurations are the best trials'
    by_cell = {r.data.tags["rkdbench.cell"]: r for r in cells}
    for record in runs(results, "study"):
        tags = record.data.tags
        study = studies(results)[tags["rkdbench.study"]]
        best = max((t for t in finished_trials(study)), key=lambda t: (t.value, -t.number))
        assert int(tags["rkdbench.selected_trial"]) == best.number
        [key] = tags["rkdbench.tuned_cells"].split(",")
        params = by_cell[key].data.params
        assert float(params["protocol.train.lr"]) == pytest.approx(best.params["train.lr"], rel=1e-9)
        assert float(params["protocol.train.weight_decay"]) == pytest.approx(
            best.params["train.weight_decay"], rel=1e-9
        )
        if "beta" in best.params:
            assert float(params["method.beta"]) == pytest.approx(best.params["beta"], rel=1e-9)
        assert record.data.metrics["study.trials"] == BUDGET

    # a rerun does nothing
    capsys.readouterr()
    assert cli(*args) == 0
    assert len(runs(results, "trial")) == len(trials) and len(runs(results, "cell")) == len(cells)
    assert "tuning round" not in capsys.readouterr().out

    # the tuned view: one row per method with its study's columns; --out writes it beside the official view
    capsys.readouterr()
    out = tmp_path / "boards"
    assert cli("leaderboard", "--results", str(results), "--tuned", "--format", "csv", "--out", str(out)) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert sorted(table["method_variant"]) == ["pgd-at", "trades"]
    assert set(table["budget"]) == {BUDGET} and set(table["trials"]) == {BUDGET}
    assert set(table["sampler"]) == {"qmc (seed 0)"}
    [folder] = [p for p in out.iterdir() if (p / "tuned").is_dir()]
    tuned = json.loads((folder / "tuned" / "leaderboard.json").read_text())
    assert {len(curve) for curve in tuned["budget_curves"].values()} == {BUDGET}
    assert (folder / "tuned" / "budget_curves.png").is_file() and (folder / "tuned" / "leaderboard.html").is_file()
    # without --tuned, --out writes both views: the tuned one even when no official table exists (every selected
    # configuration tuned away from trial 0 leaves the official view empty)
    both = tmp_path / "both"
    assert cli("leaderboard", "--results", str(results), "--out", str(both), "--no-log-to-mlflow") == 0
    assert (both / folder.name / "tuned" / "leaderboard.json").is_file()
    # a store holding only tuned configurations (here pgd-at kept trial 0, whose cell is official: hide it)
    monkeypatch.setattr(tuned_module, "official_runs", lambda runs, studies: (runs.iloc[0:0], len(runs)))
    capsys.readouterr()
    assert cli("leaderboard", "--results", str(results), "--no-log-to-mlflow") == 2
    assert "every run is a tuned configuration (rkdbench leaderboard --tuned prints them)" in capsys.readouterr().err
    only = tmp_path / "only-tuned"
    assert cli("leaderboard", "--results", str(results), "--out", str(only), "--no-log-to-mlflow") == 0
    assert [p.name for p in (only / folder.name).iterdir()] == ["tuned"]  # the tuned view, no official files


KILLER = """
import os, signal, time
from pathlib import Path
import rkdbench

@rkdbench.hookimpl
def epoch_finished(run, epoch, metrics):
    folder = Path(os.environ["RKDBENCH_TEST_MARKERS"])
    with (folder / "epochs.log").open("a") as log:
        log.write(f"{run.cell.key} {epoch}\\n")
    if run.cell.trial is None:
        return
    step = os.environ.get("RKDBENCH_TEST_STEP")
    if step == "hang" and run.cell.method == "trades" and run.cell.trial.number == 1:
        (folder / "hang").write_text(str(os.getpid()))
        time.sleep(3600)  # the test kills the whole `rkdbench tune` (driver and workers) here
    if step == "kill" and not (folder / "killed").exists():
        (folder / "killed").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)  # this worker dies; the other takes its cell over
"""


def _start(tmp_path: Path, args: list[str], step: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "RKDBENCH_TEST_MARKERS": str(tmp_path),
        "RKDBENCH_TEST_STEP": step,
        "RKDBENCH_TRIAL_HEARTBEAT_SECONDS": "1",  # a killed driver's trials are stale after 4 s
        "RKDBENCH_WAIT_POLL_SECONDS": "0.5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rkdbench.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: killing it takes its workers too
    )


def test_two_workers_a_killed_driver_and_a_killed_worker_give_exactly_the_budget(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killer.py").write_text(KILLER)
    results = tmp_path / "results"
    args = ["--plugins-dir", str(plugins), "tune", suite_file(tmp_path), "--budget", str(BUDGET), *TINY]
    args += ["--results", str(results), "--workers", "2"]

    driver = _start(tmp_path, args, "hang")
    deadline = time.monotonic() + 300
    while not (tmp_path / "hang").exists():
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # driver and workers at once, mid-trial
    driver.communicate()
    hung = [r for r in runs(results, "trial") if r.info.status == "RUNNING"]
    assert hung  # at least the hung trial's run is left RUNNING

    restarted = _start(tmp_path, args, "kill")
    out, err = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, err[-3000:]
    assert (tmp_path / "killed").exists()  # a worker of the restart was SIGKILLed inside a trial
    assert_exactly_the_budget(results)
    trials = runs(results, "trial")
    keys = collections.Counter(r.data.tags["rkdbench.cell"] for r in trials)
    assert max(keys.values()) == 1  # one run per trial cell: retried trials resumed their runs
    assert all(r.info.status == "FINISHED" for r in trials)
    by_id = {r.info.run_id: r for r in trials}
    assert all(by_id[r.info.run_id].info.status == "FINISHED" for r in hung)  # resumed in the same runs
    trained = collections.Counter(tuple(line.split()) for line in (tmp_path / "epochs.log").read_text().splitlines())
    assert max(trained.values()) == 1, [k for k, n in trained.items() if n > 1]  # no epoch trained twice
    cells = runs(results, "cell")
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in cells)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "0"], "--budget = 0 is not allowed; allowed: an integer >= 1"),
        (["--budget", "2", "--objective", "test.aa_acc"], "test"),
        (["--budget", "2", "--sampler", "tpee"], "--sampler = 'tpee' is not allowed"),
        (["--budget", "2", "--study-storage", "postgresql+psycopg2://nobody@127.0.0.1:9/none"], "cannot be opened"),
        ([], "--budget is required"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, extra, message):
    results = tmp_path / "results"
    code = cli("tune", suite_file(tmp_path), *TINY, "--results", str(results), *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not results.exists()


def test_dry_run_lists_studies_spaces_and_trials_and_creates_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    assert cli("tune", suite_file(tmp_path), "--budget", "4", *TINY, "--results", str(results), "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count("  study ") == 2 and "0 of 4 trials finished, 4 to run" in out
    assert "beta log_uniform [0.5, 20]" in out and "train.lr log_uniform [0.01, 0.25]" in out
    assert "trial 0 (official): beta=6" in out and "predicted: trials" in out
    assert not results.exists()


class PruneAllButTrialZero(optuna.pruners.BasePruner):
    """Stops every trial after its first report, except trial 0 (whose configuration then wins)."""

    def prune(self, study, trial) -> bool:
        return trial.number > 0


def test_pruned_trials_stop_early_count_in_the_budget_and_report_their_epochs(tmp_path, monkeypatch, capsys):
    import rkdbench.tuning.trials

    monkeypatch.setattr(rkdbench.tuning.trials, "make_pruner", lambda name: PruneAllButTrialZero())
    suite = tmp_path / "one.toml"
    suite.write_text(
        '[suite]\nname = "one"\nprotocol = "digits-linf"\nmethods = ["trades"]\nstudents = ["cnn-tiny"]\nseeds = [0]\n'
    )
    results = tmp_path / "results"
    args = ["tune", str(suite), "--budget", "2", "--pruner", "asha", *TINY, "--results", str(results)]
    assert cli(*args) == 0
    [study] = studies(results).values()
    assert sorted(t.state.name for t in finished_trials(study)) == ["COMPLETE", "PRUNED"]
    states = {r.data.tags["rkdbench.trial"]: r for r in runs(results, "trial")}
    assert states["1"].data.tags["rkdbench.trial_state"] == "pruned" and states["1"].data.metrics["trial.epochs"] == 1
    assert states["0"].data.tags["rkdbench.trial_state"] == "complete" and states["0"].data.metrics["trial.epochs"] == 2
    [record] = runs(results, "study")
    assert record.data.metrics["study.pruned"] == 1 and record.data.metrics["study.epochs"] == 3
    capsys.readouterr()
    assert cli("leaderboard", "--results", str(results), "--tuned", "--format", "md", "--no-log-to-mlflow") == 0
    board = capsys.readouterr().out
    assert "tuning epochs" in board and "official (trial 0)" in board


def test_dashboard_serves_the_study_storage_on_loopback_only(tmp_path):
    pytest.importorskip("optuna_dashboard")
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = tmp_path / "results"
    server = subprocess.Popen(
        [sys.executable, "-m", "rkdbench.cli", "tune", "--dashboard", "--results", str(results), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0][-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    assert json.loads(answer.read())["study_summaries"] == []
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listening.strip() and all("127.0.0.1:" in line for line in listening.strip().splitlines())
    finally:
        server.terminate()
        server.communicate(timeout=30)
