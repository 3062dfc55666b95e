"""The work inside a tuning trial's leased MLflow run (`rkdbench tune`; `Cell.trial`): train the cell like any other
(`train.train_cell`: same engine, resume and journal), report each epoch's objective to the trial's pruner, and stop
there. Nothing is evaluated on the test split, which the trial never gets (sealed before training): the run logs the
per-epoch training and validation metrics only, the epochs it trained and their seconds, and how it ended
(`schema.TRIAL_STATE`: trained to the last epoch, or pruned), then is marked FINISHED. The driver that asked the trial
(`tuning.trials`) reads the objective from the run's validation history.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Cell
from ..plugins import pm
from ..tracking import schema
from ..tracking.journal import JournaledTracker
from .options import CellOutcome, RunContext, RunOptions
from .progress import say
from .train import StopTraining, train_cell

__all__ = ["train_trial"]


def train_trial(
    cell: Cell, tracker: JournaledTracker, options: RunOptions, run_id: str, workdir: Path, position: str
) -> CellOutcome:
    """Train the trial's cell, reporting `cell.trial.objective` after each epoch (a pruner may stop it), and finish
    its run with its epochs, seconds and state; no test-split metric is ever logged."""
    trial = cell.trial
    assert trial is not None

    def report(epoch: int, metrics: dict[str, float]) -> None:
        if trial.reporter is not None and trial.reporter.report(epoch, metrics[trial.objective]):
            raise StopTraining(f"pruned after epoch {epoch}")

    result = train_cell(cell, tracker, options, run_id, workdir, position, after_epoch=report)
    history = result.history
    state = schema.TrialState.COMPLETE if result.outcome is not None else schema.TrialState.PRUNED
    metrics = {
        schema.TRIAL_EPOCHS: float(len(history)),
        schema.TRAIN_SECONDS: sum(h[schema.TRAIN_EPOCH_SECONDS] for h in history),
        **(result.outcome.cost if result.outcome is not None else {}),
    }
    tracker.log_metrics_once(run_id, metrics, step=len(history))
    tracker.set_tags(run_id, {schema.TRIAL_STATE: state})
    tracker.finish(run_id, "FINISHED")
    last = history[-1] if history else {}
    metrics[trial.objective] = float(last.get(trial.objective, float("nan")))
    pm.hook.run_finished(run=RunContext(cell, run_id, workdir, tracker.uri), result=metrics)
    say(
        options,
        f"{position} {state} {cell.label}: {trial.objective} {metrics[trial.objective]:.1%} after "
        f"{len(history)} epoch{'s' if len(history) != 1 else ''}",
    )
    return CellOutcome(
        cell, "finished", run_id, metrics, resumed_from=0 if result.outcome is None else result.outcome.resumed_from
    )
