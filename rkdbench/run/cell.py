"""The lifecycle of one cell, exactly once whatever the number of workers (local processes, Ray tasks): a
FINISHED cell is skipped; otherwise the cell's lease is taken (`lease`; status "held" when a live worker has
it), the store is re-checked under it (FINISHED: skip, unfinished: resume in the same MLflow run, none: create
it with its tags, params and config), the cell is trained and evaluated (`run.train`), and everything it logs
goes through its journal (`journal`) and is delivered to the store before the outcome is returned. A failing
cell is marked FAILED with its traceback as an artifact; Ctrl-C, or the SystemExit of a Slurm task stopping to be
requeued, marks it KILLED (resumable). A tuning trial's cell (`Cell.trial`) goes through the same lifecycle as a run
of kind `trial` in its suite protocol's experiment, and only trains and validates (`run.trial`).
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..config import Cell, to_toml
from ..plugins import get_registry
from ..tracking import Tracker, git_sha, schema
from ..tracking.journal import JournaledTracker
from .lease import CellLease
from .options import CellOutcome, RunOptions
from .progress import say
from .train import train_and_evaluate
from .trial import train_trial

__all__ = ["run_cell", "protocol_experiment"]


def protocol_experiment(tracker: Tracker, protocol) -> str:
    """The protocol's MLflow experiment id (created on first use)."""
    return tracker.experiment_id(protocol.experiment_name, schema.experiment_tags(protocol.name, protocol.hash))


def _tags(cell: Cell) -> dict[str, str]:
    component = get_registry().get("method", cell.method)
    tags = schema.cell_tags(
        cell=cell.key,
        protocol=cell.protocol.name,
        protocol_hash=cell.protocol.hash,
        protocol_overrides=str(cell.protocol.overrides),
        method=cell.method,
        variant=cell.variant,
        student=cell.student,
        teacher=cell.teacher,
        seed=cell.seed,
        suite=cell.suite,
        plugin=component.dist,
        extra_teachers=cell.extra_teachers,
        plugin_version=component.version,
        git_sha=git_sha(),
    )
    return tags if cell.trial is None else {**tags, **_trial_tags(cell)}


def _trial_tags(cell: Cell) -> dict[str, str]:
    trial = cell.trial
    values = json.dumps(trial.values, sort_keys=True, default=str)
    return schema.trial_tags(study=trial.study, number=trial.number, values=values)


def _params(cell: Cell) -> dict[str, Any]:
    params = schema.protocol_params(cell.protocol.data)
    params.update({f"method.{k}": v for k, v in cell.method_params.items()})
    params.update(
        {
            "cell.method": cell.method,
            "cell.student": cell.student,
            "cell.teacher": cell.teacher,
            "cell.seed": cell.seed,
            "cell.method_version": cell.method_version,
        }
    )
    return params


def run_cell(cell: Cell, tracker: Tracker, options: RunOptions, position: str = "") -> CellOutcome:
    """Train and evaluate one cell into its MLflow run, exactly once (see the module docstring)."""
    experiment_id = protocol_experiment(tracker, cell.home)
    existing = tracker.find_run(experiment_id, cell.key)
    if existing is not None and existing.info.status == "FINISHED":
        return _skipped(cell, existing, options, position)
    workdir = options.results / "cells" / cell.key
    lease = CellLease(workdir)
    if not lease.acquire():
        say(options, f"[dim]{position} held {cell.label}: by {lease.holder() or 'another worker'}[/]")
        return CellOutcome(cell, "held", existing.info.run_id if existing else "", error=lease.holder())
    try:
        return _run_leased(cell, tracker, options, position, experiment_id, workdir)
    finally:
        lease.release()


def _skipped(cell: Cell, run, options: RunOptions, position: str) -> CellOutcome:
    say(options, f"[dim]{position} skip {cell.label}: finished in run {run.info.run_id}[/]")
    return CellOutcome(cell, "skipped", run.info.run_id)


def _create_run(cell: Cell, tracker: Tracker, journaled: JournaledTracker, experiment_id: str, workdir: Path) -> str:
    """The cell's new MLflow run, with its tags, params and `config.toml` (the cell and its protocol)."""
    journaled.journal.discard_pending()  # entries for a run this store does not have
    run_id = tracker.create_run(experiment_id, cell.label.replace(" / ", "-").replace(" ", ""), _tags(cell))
    journaled.log_params(run_id, _params(cell))
    write_text_atomic(
        workdir / "config.toml",
        to_toml(
            {
                "cell": {
                    "key": cell.key,
                    "method": cell.method,
                    "student": cell.student,
                    "teacher": cell.teacher,
                    "seed": cell.seed,
                    "suite": cell.suite,
                },
                "method_params": cell.method_params,
                **({"trial": {"study": cell.trial.study, **cell.trial.values}} if cell.trial is not None else {}),
                **cell.protocol.data,
            }
        ),
    )
    journaled.log_artifact(run_id, workdir / "config.toml")
    return run_id


def _run_leased(
    cell: Cell, tracker: Tracker, options: RunOptions, position: str, experiment_id: str, workdir: Path
) -> CellOutcome:
    existing = tracker.find_run(experiment_id, cell.key)  # again: a worker may have finished it meanwhile
    if existing is not None and existing.info.status == "FINISHED":
        return _skipped(cell, existing, options, position)
    journaled = JournaledTracker(tracker, workdir)
    if existing is not None:
        run_id = existing.info.run_id
        if journaled.journal.terminal_status(run_id) == "FINISHED":  # trained; only its logging was cut short
            say(options, f"{position} deliver {cell.label}: trained earlier, logging it from {journaled.journal.path}")
            return _delivered(
                journaled, CellOutcome(cell, "finished", run_id, journaled.journal.metrics(run_id)), options, position
            )
        journaled.mark_running(run_id)
        if cell.trial is not None:  # a retried trial resumes the run under its new number
            journaled.set_tags(run_id, _trial_tags(cell))
    else:
        run_id = _create_run(cell, tracker, journaled, experiment_id, workdir)
    work = train_and_evaluate if cell.trial is None else train_trial
    try:
        outcome = work(cell, journaled, options, run_id, workdir, position)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SystemExit: a Slurm task told to stop and requeue
        journaled.finish(run_id, "KILLED")
        raise
    except Exception as exc:
        write_text_atomic(workdir / "traceback.txt", "".join(traceback.format_exception(exc)))
        journaled.log_artifact(run_id, workdir / "traceback.txt")
        journaled.finish(run_id, "FAILED")
        say(options, f"[red]{position} FAILED {cell.label}: {type(exc).__name__}: {exc}[/]")
        outcome = CellOutcome(cell, "failed", run_id, error=f"{type(exc).__name__}: {exc}")
    return _delivered(journaled, outcome, options, position)


def _delivered(journaled: JournaledTracker, outcome: CellOutcome, options: RunOptions, position: str) -> CellOutcome:
    """The outcome once the cell's journal is in MLflow; "undelivered" (one line) when the store still does not
    answer: the next `rkdbench run` delivers it without retraining."""
    if journaled.deliver():
        return outcome
    pending = len(journaled.journal.pending)
    outcome.status = "undelivered"
    why = (
        journaled.last_error
        if journaled.rejected
        else f"tracking store {journaled.uri} unreachable ({journaled.last_error})"
    )
    outcome.error = (
        f"{why}; {pending} log entries kept in {journaled.journal.path}: run the suite again to "
        f"deliver them (nothing is retrained)"
    )
    say(options, f"[red]{position} undelivered {outcome.cell.label}: {outcome.error}[/]")
    return outcome
