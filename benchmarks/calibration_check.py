"""Predicted against actual wall time of every cell of a suite (default `digits-quick`): does `rkdbench calibrate`
+ `--dry-run` price cells within +-30%?

Run:  python benchmarks/calibration_check.py [--suite digits-quick] [--set train.epochs=10] [--threads 1]
                                              [--model-dir M]
It calibrates the suite on this CPU (cached in $RKDBENCH_CALIBRATION_DIR, else a temporary folder), predicts each
cell as `--dry-run` does (AutoAttack priced with the teacher's accuracy), then runs the suite for real into a
temporary results folder, timing each cell's training (run start to last epoch) and evaluation (last epoch to run
end) through the harness's own hooks, with wall and process CPU time. A second prediction uses the accuracy and
the number of evaluated checkpoints the run actually had, which separates the timing model's error from the
accuracy assumption's. The digits teacher is built into --model-dir first when missing (about a minute).
Digits-quick takes about 5 minutes on one quiet core. On a shared machine wall times follow the load, which
changes between calibration and run: use `--clock cpu` there (calibrated and compared in process CPU time, which
with one thread is what the run costs on a quiet core).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from rkdbench import hookimpl
from rkdbench.config import load_suite, parse_set
from rkdbench.cost.benchmarking import machine_line
from rkdbench.cost.calibration import Calibration, calibrate_cells, predict_cell
from rkdbench.cost.planning import expected_accuracy
from rkdbench.plugins import get_registry, pm
from rkdbench.run.cell import run_cell
from rkdbench.run.cells import expand_cells
from rkdbench.run.options import RunOptions
from rkdbench.run.prepare import prepare
from rkdbench.tracking import Tracker


class PhaseClock:
    """Hook plugin: wall and CPU time at run start, after each epoch, and at run end."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}

    def _mark(self, name: str) -> None:
        self.marks[name] = (time.perf_counter(), time.process_time())

    @hookimpl
    def run_started(self, run) -> None:
        self._mark("start")

    @hookimpl
    def epoch_finished(self, run, epoch, metrics) -> None:
        self._mark("trained")

    @hookimpl
    def run_finished(self, run, result) -> None:
        self._mark("end")

    def span(self, a: str, b: str) -> tuple[float, float]:
        return self.marks[b][0] - self.marks[a][0], self.marks[b][1] - self.marks[a][1]


def error(predicted: float, actual: float) -> str:
    return f"{(predicted - actual) / actual:+.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="digits-quick")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="Calibrate and compare in wall time (a quiet machine) or process CPU time (a shared one).",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    suite = load_suite(args.suite, parse_set(args.sets))
    cells = expand_cells(suite)
    dataset = get_registry().get("dataset", suite.protocol.header.dataset).obj
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(os.environ.get("RKDBENCH_CALIBRATION_DIR", Path(tmp) / "calibration"))
        calibration = Calibration.load(device, folder, clock=args.clock)
        started = time.perf_counter(), time.process_time()
        calibrate_cells(cells, device, calibration)
        calibration_cost = time.perf_counter() - started[0], time.process_time() - started[1]
        options = RunOptions(
            results=Path(tmp) / "results",
            build_teachers=True,
            model_dir=Path(args.model_dir) if args.model_dir else Path(tmp) / "models",
            device="cpu",
        )
        tracker = Tracker(options.results)
        prepare(cells, tracker, options)
        clock = PhaseClock()
        pm.register(clock, name="calibration-check-clock")
        print(machine_line())
        print(
            f"suite {suite.name} ({len(cells)} cells) on {calibration.identity['device']}, {args.threads} thread(s); "
            f"calibration took {calibration_cost[0]:.0f}s wall, {calibration_cost[1]:.0f}s CPU"
        )
        print(
            f"predicted {args.clock} seconds (assumed teacher accuracy / the run's own accuracy and evaluation count)"
            f" vs actual wall (CPU) seconds; err against actual {args.clock} time"
        )
        print(
            f"{'cell':<38}{'train pred':>11}{'train act':>16}{'err':>6}{'eval pred':>16}{'eval act':>16}{'err':>6}"
            f"{'cell pred':>16}{'cell act':>16}{'err':>6}",
            flush=True,
        )
        try:
            for cell in cells:
                assumed_acc, _ = expected_accuracy(cell, options.model_dir)
                assumed = predict_cell(cell, calibration, dataset.split_sizes, assumed_acc)
                wall, cpu = time.perf_counter(), time.process_time()
                m = run_cell(cell, tracker, options).metrics
                whole = time.perf_counter() - wall, time.process_time() - cpu
                last = cell.protocol.train.epochs - 1
                own = predict_cell(
                    cell,
                    calibration,
                    dataset.split_sizes,
                    (m["test.clean_acc"], m.get("test.aa_acc", m["test.clean_acc"])),
                    evaluations=1 if m.get("best_val.epoch", last) == last else 2,
                )
                train, evaluation = clock.span("start", "trained"), clock.span("trained", "end")
                i = 0 if args.clock == "wall" else 1
                print(
                    f"{cell.variant + ' / ' + cell.student:<38}{assumed.train:>11.1f}"
                    f"{f'{train[0]:.1f} ({train[1]:.1f})':>16}{error(assumed.train, train[i]):>6}"
                    f"{f'{assumed.eval:.1f}/{own.eval:.1f}':>16}{f'{evaluation[0]:.1f} ({evaluation[1]:.1f})':>16}"
                    f"{error(own.eval, evaluation[i]):>6}{f'{assumed.total:.1f}/{own.total:.1f}':>16}"
                    f"{f'{whole[0]:.1f} ({whole[1]:.1f})':>16}{error(own.total, whole[i]):>6}",
                    flush=True,
                )
        finally:
            pm.unregister(name="calibration-check-clock")
    print("err: (predicted - actual) / actual, with the run's own accuracy for eval and cell")


if __name__ == "__main__":
    main()
