"""Predicted against actual wall time of every cell of a suite (default `digits-quick`), before and after one cell of
each kind ran: are the predictions `rkdbench run` orders cells by, and `--dry-run` prints, within 25% once one cell
of each kind ran?

Run:  python benchmarks/prediction_check.py [--suite digits-quick] [--set train.epochs=10] [--threads 1]
                                             [--seeds 0,1] [--model-dir M]
Phase "calibration": `rkdbench calibrate` of the suite (repeated measurements; cached in $RKDBENCH_CALIBRATION_DIR,
else a temporary folder), then the cells of the first seed are predicted as `rkdbench run` predicts them
(`rkdbench.run.schedule`, the code the executors and `--dry-run` use: nothing has run, so from the calibration) and
run for real, longest first, into a temporary store, each timed from the start to the end of `run_cell` (training,
evaluation and logging). Phase "learned": the same kinds with the second seed, predicted from the store the first
phase filled (the finished cells' logged times), and run. Prints each cell's source, predicted and actual seconds
and error, its process CPU seconds and wall / CPU (above 1: the cell waited for a core), the load average before
and after each phase, and each phase's largest error. The digits teacher is
built into --model-dir first when missing (about a minute). Digits-quick takes about 2 x 3 minutes on one quiet
core; on a shared machine, wall times follow the neighbours' load: read the load averages beside the errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rkdbench.config import load_suite, parse_set
from rkdbench.cost.benchmarking import machine_line
from rkdbench.cost.calibration import Calibration, calibrate_cells
from rkdbench.run.cell import run_cell
from rkdbench.run.cells import expand_cells
from rkdbench.run.options import RunOptions
from rkdbench.run.prepare import prepare
from rkdbench.run.schedule import schedule
from rkdbench.tracking import Tracker

GOAL = 0.25  # the largest error accepted once one cell of each kind ran


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


@dataclass
class Row:
    """One cell of a phase: its kind (variant / student), predicted and actual wall seconds, and its CPU seconds."""

    kind: str
    predicted: float | None
    actual: float
    cpu: float

    @property
    def error(self) -> float | None:
        return None if self.predicted is None else (self.predicted - self.actual) / self.actual


def run_phase(name: str, cells: list, tracker: Tracker, options: RunOptions) -> list[Row]:
    """Predict the cells as a run does, run them longest first, print one row each."""
    print(f"phase {name}: {len(cells)} cells, {load()}", flush=True)
    planned = schedule(cells, tracker, options)
    rows = []
    for i in planned.order:
        cell, plan = cells[i], planned.plans[i]
        started = time.perf_counter(), time.process_time()
        outcome = run_cell(cell, tracker, options)
        actual, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        if outcome.status != "finished":
            raise SystemExit(f"{cell.label}: {outcome.status} {outcome.error}")
        row = Row(
            f"{cell.variant} / {cell.student}", None if plan.prediction is None else plan.prediction.total, actual, cpu
        )
        rows.append(row)
        print(
            f"  {row.kind:<28}{plan.source:<13}"
            f"{'-' if row.predicted is None else f'{row.predicted:.1f}':>10}{actual:>10.1f}"
            f"{'' if row.error is None else f'{row.error:+.0%}':>8}{cpu:>10.1f}{actual / cpu:>10.2f}",
            flush=True,
        )
    print(f"phase {name} ended, {load()}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="digits-quick")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", default="0,1", help="The seed of the first phase and of the second.")
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    first, second = (int(s) for s in args.seeds.split(","))
    device = torch.device("cpu")
    suite = load_suite(args.suite, parse_set(args.sets))
    before = expand_cells(dataclasses.replace(suite, seeds=[first]))
    after = expand_cells(dataclasses.replace(suite, seeds=[second]))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("RKDBENCH_CALIBRATION_DIR", str(Path(tmp) / "calibration"))
        options = RunOptions(
            results=Path(tmp) / "results",
            build_teachers=True,
            model_dir=Path(args.model_dir) if args.model_dir else Path(tmp) / "models",
            device="cpu",
        )
        print(machine_line())
        print(f"suite {suite.name}: {len(before)} kinds, seeds {first} then {second}; {args.threads} thread(s)")
        print(f"calibrating, {load()}", flush=True)
        started = time.perf_counter(), time.process_time()
        calibrate_cells(before, device, Calibration.load(device), say=lambda line: print(f"  {line}", flush=True))
        print(
            f"calibration took {time.perf_counter() - started[0]:.0f}s wall, {time.process_time() - started[1]:.0f}s "
            f"CPU, {load()}"
        )
        tracker = Tracker(options.results)
        prepare(before, tracker, options)
        print(
            f"  {'cell':<28}{'source':<13}{'predicted':>10}{'actual':>10}{'err':>8}{'CPU s':>10}{'wall/CPU':>10}"
            "   (wall seconds; CPU: this process, one thread)"
        )
        results = {
            name: run_phase(name, cells, tracker, options)
            for name, cells in (("calibration", before), ("learned", after))
        }
    for name, rows in results.items():
        errors = [abs(r.error) for r in rows if r.error is not None]
        print(f"{name}: largest error {max(errors, default=float('nan')):.0%} over {len(errors)} predicted cells")
    learned = [abs(r.error) for r in results["learned"] if r.error is not None]
    verdict = "within" if learned and max(learned) <= GOAL else "NOT within"
    print(f"once one cell of each kind ran: {verdict} {GOAL:.0%} in wall time")
    # what the same prediction would miss by where wall time is CPU time (one thread, a quiet core): each kind's
    # CPU seconds in the first phase against the second's, apart from the neighbours' load
    first = {r.kind: r.cpu for r in results["calibration"]}
    cpu_errors = {r.kind: (first[r.kind] - r.cpu) / r.cpu for r in results["learned"] if r.kind in first}
    print(
        "in CPU seconds (the first phase's cell of each kind against the second's): "
        + ", ".join(f"{kind} {error:+.0%}" for kind, error in cpu_errors.items())
    )
    print("err: (predicted - actual) / actual")


if __name__ == "__main__":
    main()
