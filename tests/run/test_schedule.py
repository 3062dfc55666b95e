"""Scheduling from predictions: cells go to the executor longest first by the times finished cells of their kind
logged in the store (preferred over this device's calibration, and the dry run says which), FINISHED cells first,
cells nothing predicts by their methods' declared passes; the outcomes come back in the suite's order; the suite
status line's ETA is the remaining predicted seconds over the executor's parallelism."""

from __future__ import annotations

import json

import pytest
import torch

from rkdbench.cli import main
from rkdbench.config import load_suite
from rkdbench.cost.calibration import Calibration, attack_key, device_identity, train_key
from rkdbench.run.cell import protocol_experiment
from rkdbench.run.cells import expand_cells
from rkdbench.run.executor import Executor, run_suite
from rkdbench.run.options import CellOutcome, RunOptions
from rkdbench.run.progress import suite_status
from rkdbench.run.schedule import schedule
from rkdbench.tracking import Tracker, schema
from support.tiny_protocol import write_tiny_protocol

CPU = torch.device("cpu")
HERE = device_identity(CPU)["device"]


@pytest.fixture
def suite_path(tmp_path):
    write_tiny_protocol(tmp_path / "tiny.toml", "tiny-schedule", device="cpu")
    path = tmp_path / "suite.toml"
    path.write_text(
        f'[suite]\nname = "sched"\nprotocol = "{tmp_path / "tiny.toml"}"\nmethods = ["standard", "pgd-at", "trades"]\n'
        'students = ["cnn-tiny"]\nseeds = [0, 1]\n'
    )
    return str(path)


def finished_run(tracker: Tracker, cell, train: float, evaluation: float, device: str = HERE) -> None:
    """A FINISHED cell run as `rkdbench run` logs one: its tags and its two logged wall times."""
    tags = schema.cell_tags(
        cell=cell.key,
        protocol=cell.protocol.name,
        protocol_hash=cell.protocol.hash,
        protocol_overrides="{}",
        method=cell.method,
        variant=cell.variant,
        student=cell.student,
        teacher=cell.teacher,
        seed=cell.seed,
        suite=cell.suite,
        plugin="rkdbench",
        extra_teachers=cell.extra_teachers,
        plugin_version="0",
        git_sha="test",
    )
    run_id = tracker.create_run(
        protocol_experiment(tracker, cell.protocol),
        cell.label,
        {**tags, **schema.timing_tags(device, torch.get_num_threads())},
    )
    tracker.log_metrics(run_id, {schema.CELL_TRAIN_SECONDS: train, schema.CELL_EVAL_SECONDS: evaluation})
    tracker.finish(run_id, "FINISHED")


class Recorder(Executor):
    """Runs nothing: records the cells and predictions it was handed."""

    name = "recorder"

    def run(self, cells, tracker, options, prepare):
        self.cells, self.predicted = list(cells), dict(options.predicted)
        return [CellOutcome(cell, "skipped") for cell in cells]


def test_cells_go_longest_first_by_their_kinds_logged_times(suite_path, tmp_path):
    suite = load_suite(suite_path)
    cells = expand_cells(suite)
    by = {(c.method, c.seed): c for c in cells}
    tracker = Tracker(tmp_path / "results")
    # logged times opposite to what the methods declare: standard (no attack) took longest here
    for method, train, evaluation in (("standard", 300.0, 100.0), ("pgd-at", 20.0, 10.0), ("trades", 100.0, 50.0)):
        finished_run(tracker, by[method, 0], train, evaluation)
    options = RunOptions(results=tmp_path / "results", model_dir=tmp_path / "models", device="cpu")

    planned = schedule(cells, tracker, options)
    ordered = [(cells[i].method, cells[i].seed) for i in planned.order]
    # the finished seed-0 cells first (skipped at once, in the suite's order), then seed 1 longest first
    assert ordered == [
        ("standard", 0),
        ("pgd-at", 0),
        ("trades", 0),
        ("standard", 1),
        ("trades", 1),
        ("pgd-at", 1),
    ]
    assert {p.source for p in planned.plans} == {"learned"}
    assert planned.predicted[by["standard", 1].key] == 400.0 and planned.predicted[by["standard", 0].key] == 0.0

    recorder = Recorder()
    outcomes = run_suite(suite, options, recorder)
    assert [(c.method, c.seed) for c in recorder.cells] == ordered
    assert recorder.predicted == planned.predicted
    assert [o.cell.key for o in outcomes] == [c.key for c in cells]  # the suite's order for the summary


def test_cells_nothing_predicts_are_placed_by_their_declared_passes(suite_path, tmp_path):
    suite = load_suite(suite_path)
    cells = expand_cells(suite)
    tracker = Tracker(tmp_path / "results")
    options = RunOptions(results=tmp_path / "results", model_dir=tmp_path / "models", device="cpu")
    planned = schedule(cells, tracker, options)
    assert not (tmp_path / "results").exists()  # reading the times created no store
    assert {p.source for p in planned.plans} == {"none"} and set(planned.predicted.values()) == {None}
    methods = [cells[i].method for i in planned.order]
    assert methods[-2:] == ["standard", "standard"]  # no training attack: the fewest passes
    assert [cells[i].seed for i in planned.order if cells[i].method == "pgd-at"] == [0, 1]  # ties keep the order

    # one pgd-at cell ran: the kinds nothing predicts are scaled to seconds by its time per declared pass
    pgd_at = next(c for c in cells if c.method == "pgd-at" and c.seed == 0)
    finished_run(tracker, pgd_at, 1.0, 1.0)
    planned = schedule(cells, tracker, options)
    assert [cells[i].key for i in planned.order][0] == pgd_at.key  # finished first
    assert [cells[i].method for i in planned.order][-2:] == ["standard", "standard"]


def test_the_dry_run_prefers_logged_times_to_the_calibration_and_says_which(suite_path, tmp_path, capsys):
    cells = expand_cells(load_suite(suite_path))
    calibration = Calibration.load(CPU)  # conftest: $RKDBENCH_CALIBRATION_DIR in tmp_path
    for cell in cells:
        calibration.train[train_key(cell)] = {"step": 0.1, "val_point": 0.0, "epoch_rest": 0.0}
    calibration.attack[attack_key(cells[0].protocol, "pgd2", "cnn-tiny", 32)] = {
        "batch_size": 32,
        "all": {"fixed": 0.5, "per_point": 0.0},
    }
    trades = [c for c in cells if c.method == "trades"]
    calibration.spread[train_key(trades[0])] = {"repeats": 3, "spread": 1.5, "doubtful": True}
    calibration.save()
    finished_run(Tracker(tmp_path / "results"), next(c for c in cells if c.method == "pgd-at"), 30.0, 12.0)

    assert main_code("run", suite_path, "--dry-run", "--json", "--results", str(tmp_path / "results")) == 0
    planned = {c["label"]: c["predicted_seconds"] for c in json.loads(capsys.readouterr().out)["cells"]}
    for cell in cells:
        predicted = planned[cell.label]
        if cell.method == "pgd-at":  # both seeds: the one finished run of their kind
            assert predicted["source"] == "learned" and predicted["total"] == 42.0
            assert predicted["basis"] == f"1 finished run on {HERE}, 1 thread"
        else:  # never ran: 2 epochs x 10 steps (1257 / 128) x 0.1 s + PGD-2 on 40 points in 2 batches
            assert predicted["source"] == "calibration"
            assert predicted["total"] == pytest.approx(2 * 1257 / 128 * 0.1 + 1.0, abs=0.01)
            assert ("doubtful" in predicted["basis"]) == (cell.method == "trades")

    assert main_code("run", suite_path, "--dry-run", "--results", str(tmp_path / "results")) == 0
    out = capsys.readouterr().out
    line = {c.label: next(line for line in out.splitlines() if c.label in line) for c in cells}
    assert all("from finished cells)" in line[c.label] for c in cells if c.method == "pgd-at")
    assert all("from calibration)" in line[c.label] for c in cells if c.method == "standard")
    assert all("from calibration, doubtful)" in line[c.label] for c in cells if c.method == "trades")
    assert f"2 cells from the logged times of their kind: the median of 1 finished run on {HERE}" in out
    assert "4 cells never ran here, priced from calibration" in out
    assert "doubtful: 1 of its entries had repetitions up to 150% apart" in out


def main_code(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


class _Ended:
    def __init__(self, key: str, status: str = "finished") -> None:
        self.cell = type("C", (), {"key": key})()
        self.status = status


def test_the_eta_is_the_remaining_predicted_time_over_the_parallelism():
    predicted = {"a": 100.0, "b": 60.0, "c": 40.0, "d": None}
    # b and c predicted (100 s), d at the mean of the cells that ran (80 s); two at a time
    line = suite_status([_Ended("a")], 4, [80.0], parallel=2, predicted=predicted)
    assert line.endswith("1m spent, ~2m to go for 3 more")  # (100 + 80) / 2 = 90 s
    assert suite_status([_Ended("a")], 4, [80.0], parallel=1, predicted=predicted).endswith("~3m to go for 3 more")
    # the longest remaining cell bounds it from below, however many run at once
    assert suite_status([], 3, [], parallel=3, predicted={"x": 10.0, "y": 600.0, "z": 10.0}).endswith(
        "~10m to go for 3 more"
    )
    # before any cell ran, a cell nothing predicts leaves no ETA; without predictions: the mean of those that ran
    assert "to go" not in suite_status([], 4, [], predicted=predicted)
    assert suite_status([_Ended("a")], 3, [120.0], parallel=2).endswith("~2m to go for 2 more")
    # predictions of another set of cells are not used
    assert suite_status([_Ended("a")], 3, [30.0], predicted={"a": 1.0, "b": 600.0}).endswith("~1m to go for 2 more")
