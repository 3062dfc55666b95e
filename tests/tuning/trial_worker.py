"""A tuning worker for the multi-process tests: the real storage, study, claim and heartbeat, and a cheap stand-in
for a trial's cell that behaves like the harness's (no training): keyed by `trial_cell_key`, held by the real
`CellLease`, resumed from its epoch checkpoint, skipped once finished, logging each epoch it computes.

    python trial_worker.py RESULTS BUDGET [--hang-on N --marker PATH] [--interrupt-on N]

`--hang-on N`: in the N-th trial this worker runs (1-based), after the first epoch, touch MARKER and hang (the test
SIGKILLs it there). `--interrupt-on N`: raise KeyboardInterrupt there instead (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import optuna

from rkdbench.atomic import write_text_atomic
from rkdbench.config import canonical_hash
from rkdbench.config.space import Choice, LogUniform
from rkdbench.run.lease import CellLease
from rkdbench.tuning.storage import Heartbeat, open_storage, storage_lock, study_storage_url
from rkdbench.tuning.study import StudyIdentity, TrialRun, open_study, run_trials, split_params, trial_cell_key

SPACE = {"train.lr": LogUniform(0.01, 0.25), "kl_reduction": Choice("mean", "batchmean")}
DEFAULTS = {"train.lr": 0.05, "kl_reduction": "mean"}
IDENTITY = StudyIdentity(
    protocol_hash="0123456789abcdef",
    method="rslad",
    method_version="1",
    method_params={"kl_reduction": "mean"},
    student="cnn-small",
    teacher="digits/Linf/rkdbench-cnn-large",
    space=SPACE,
    sampler="qmc",
    seed=0,
    objective="val.pgd_acc",
    pruner="none",
)
EPOCHS = 3
HEARTBEAT = Heartbeat(interval=1, grace=2, max_retry=3)


def score(params: dict) -> float:
    """A deterministic 'validation accuracy' of a configuration."""
    return 0.5 - 0.1 * abs(math.log(params["train.lr"] / 0.05)) + (0.05 if params["kl_reduction"] == "batchmean" else 0)


def open_test_study(results: Path):
    url = study_storage_url(results)
    return open_study(open_storage(url, HEARTBEAT), IDENTITY, DEFAULTS, storage_lock(url))


def cell_evaluator(results: Path, study_name: str, hang_on: int = 0, interrupt_on: int = 0, marker: str = ""):
    runs = {"count": 0}

    def evaluate(run: TrialRun) -> float:
        runs["count"] += 1
        protocol_set, method_set = split_params(run.params, DEFAULTS)
        key = trial_cell_key(study_name, canonical_hash({"protocol": protocol_set, "method": method_set}))
        folder = results / "cells" / key
        log = results / "epochs.log"
        while True:
            with CellLease(folder) as lease:
                if not lease.held:  # another worker trains this cell: wait for it
                    time.sleep(0.05)
                    continue
                done = folder / "value.json"
                if done.exists():
                    return json.loads(done.read_text())["value"]
                progress = folder / "progress.json"
                start = json.loads(progress.read_text())["epochs"] if progress.exists() else 0
                for epoch in range(start, EPOCHS):
                    if epoch == 1 and runs["count"] in (hang_on, interrupt_on):
                        if runs["count"] == interrupt_on:
                            raise KeyboardInterrupt
                        Path(marker).write_text(str(run.number))
                        time.sleep(3600)
                    time.sleep(0.02)
                    with log.open("a") as fh:
                        fh.write(f"{key} {epoch} trial {run.number}\n")
                    write_text_atomic(progress, json.dumps({"epochs": epoch + 1}))
                value = score(run.params)
                write_text_atomic(done, json.dumps({"value": value}))
                return value

    return evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("budget", type=int)
    parser.add_argument("--hang-on", type=int, default=0)
    parser.add_argument("--interrupt-on", type=int, default=0)
    parser.add_argument("--marker", default="")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_test_study(args.results)
    evaluate = cell_evaluator(args.results, study.study_name, args.hang_on, args.interrupt_on, args.marker)
    tallied = run_trials(study, SPACE, args.budget, evaluate, poll=0.2)
    print(json.dumps({"finished": tallied.finished}))


if __name__ == "__main__":
    main()
