"""The tuner's overhead per trial (`rkdbench tune`) against the same trials' cells run plainly (goal: under 2 s on CPU).

B is the tuner: a study of `--budget` trials of TRADES on digits (cnn-tiny, `--epochs` epochs, PGD-2 validation) run
by `tuning.trials.run_studies` through the serial executor on a fresh results folder and study storage (the study
created with trial 0 enqueued, Optuna's ask, the exactly-N claim, each trial's cell built from its values, the
heartbeat thread, the tell from the run's validation history), then `select` and `record_study` (the study run).
A is the plain run of the very same cells (the trials' configurations, keyed as trials, train and validate only) by
`run.loop.run_cells` on a fresh results folder: the same training, journal, lease and MLflow runs, and no tuner.
Both sides pay a new MLflow store. Pairs alternate B A, A B (`cost.benchmarking.interleave`); printed: the machine,
each side's median, the median pair ratio tuner/plain with its range, and the median of the per-pair differences
(B - A) divided by the trials, which is the overhead per trial.

Run:  OMP_NUM_THREADS=1 python benchmarks/tune_overhead.py [--pairs 5] [--budget 3] [--epochs 1]   (--smoke: 1 pair)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import optuna
import torch

from rkdbench.config import load_suite
from rkdbench.cost.benchmarking import interleave, machine_line
from rkdbench.run.cells import expand_cells
from rkdbench.run.executor import build_executor
from rkdbench.run.loop import run_cells
from rkdbench.run.options import RunOptions
from rkdbench.tracking import Tracker
from rkdbench.tuning.storage import open_storage, study_storage_url
from rkdbench.tuning.trials import plan_studies, record_study, run_studies, trial_cell

SUITE = (
    '[suite]\nname = "overhead"\nprotocol = "digits-linf"\nmethods = ["trades"]\nstudents = ["cnn-tiny"]\nseeds = [0]\n'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--budget", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="one pair, no warm-up (a check that it runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    (folder / "suite.toml").write_text(SUITE)
    sets = {"train.epochs": args.epochs, "train.val_pgd_steps": 2}
    suite = load_suite(str(folder / "suite.toml"), sets)
    [study] = plan_studies(suite, expand_cells(suite), budget=args.budget)
    executor = build_executor("serial")
    count = {"a": 0, "b": 0}

    def fresh(side: str) -> RunOptions:
        count[side] += 1
        return RunOptions(results=folder / f"{side}{count[side]}", model_dir=folder / "models")

    def tuner() -> list:
        options = fresh("b")
        url = study_storage_url(options.results)
        storage = open_storage(url)
        tracker = Tracker(options.results)
        [result] = run_studies([study], executor, tracker, options, storage, url)  # selects, too
        loaded = optuna.load_study(study_name=study.name, storage=storage)
        record_study(result, loaded, tracker, options)
        return [(t.params, t.number) for t in sorted(loaded.get_trials(), key=lambda t: t.number)]

    trials = tuner()  # the trials' values: A runs their cells
    cells = [trial_cell(study, params, number) for params, number in trials]

    def plain() -> None:
        options = fresh("a")
        run_cells(cells, Tracker(options.results), options)

    comparison = interleave(
        tuner, plain, pairs=1 if args.smoke else args.pairs, warmup=0 if args.smoke else 1, names=("tuner", "plain")
    )
    differences = [(a.wall - b.wall) / len(cells) for a, b in zip(comparison.a, comparison.b)]
    print(machine_line())
    print(f"{len(cells)} trials of trades on digits/cnn-tiny, {args.epochs} epoch(s) each, serial executor")
    print(comparison.report())
    print(
        f"tuner overhead per trial: median {statistics.median(differences):.2f} s "
        f"(min {min(differences):.2f}, max {max(differences):.2f}) over {len(differences)} pairs"
    )


if __name__ == "__main__":
    main()
