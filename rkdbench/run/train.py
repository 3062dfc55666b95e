"""The work inside one cell's leased MLflow run: build its student and teachers, train it with the method
object the cell carries (resuming from its checkpoint; `train_cell`, which a tuning trial's cell shares, `run.trial`),
then evaluate, diagnose, log the metrics, artifacts and tags, and mark the run FINISHED (`train_and_evaluate`).
Everything is logged through the cell's journal; the observer hooks (`run_started`, `epoch_finished`,
`run_finished`) see each step."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..attacks.traits import CLEAN, HOST_COLUMNS
from ..config import Cell
from ..contracts.build import fresh_method
from ..cost.calibration import device_identity
from ..data import Splits, load_splits
from ..errors import ConfigError
from ..evaluation.evaluate import test_points
from ..evaluation.flags import FLAG_TAGS, join_flags
from ..evaluation.transfer import TeacherProbe
from ..plugins import create, pm
from ..teachers.load import load_teacher
from ..tracking import schema
from ..tracking.journal import JournaledTracker
from ..training.build import build_trainer
from ..training.engine import TrainOutcome
from ..training.setup import pick_device
from .options import CellOutcome, RunContext, RunOptions
from .prepare import teacher_card
from .progress import epoch_progress, say
from .selections import evaluate_selections, reference_teacher, specialization

__all__ = ["StopTraining", "Trained", "train_cell", "train_and_evaluate"]


def _done_line(cell: Cell, metrics: dict[str, float], flags: list[str]) -> str:
    split = schema.selection_split("last")
    keys = {name: schema.parse_metric_key(name) for name in metrics}
    shown = [  # per-stage AutoAttack numbers and worst-class accuracies stay in MLflow
        (key.label, metrics[name])
        for name, key in keys.items()
        if key is not None and key.split == split and key.is_accuracy and key.label != CLEAN
    ]
    return (
        f"done {cell.label}: clean {metrics[schema.metric_key(split, CLEAN)]:.1%}, "
        + ", ".join(f"{HOST_COLUMNS.get(label, label)} {value:.1%}" for label, value in shown)
        + (f" [yellow]flags: {join_flags(flags)}[/]" if flags else "")
    )


class StopTraining(Exception):
    """Raised by `train_cell`'s `after_epoch` hook to end training after that epoch (a pruned tuning trial)."""


@dataclass
class Trained:
    """A cell after training: its student, splits, device and teachers, and the engine's outcome (None when
    `after_epoch` stopped training early; `history` then holds the epochs trained)."""

    student: nn.Module
    splits: Splits
    device: torch.device
    teachers: dict[str, nn.Module]
    outcome: TrainOutcome | None
    history: list[dict[str, float]]


def train_cell(
    cell: Cell,
    tracker: JournaledTracker,
    options: RunOptions,
    run_id: str,
    workdir: Path,
    position: str,
    after_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Trained:
    """Build the cell's student, method and teachers and train it (resuming from its checkpoint), logging each epoch;
    `after_epoch(epoch, metrics)` runs after an epoch is logged and may raise `StopTraining`. A tuning trial's cell
    never gets the test split: it is sealed before training (`Splits.sealed`), so any read of it fails."""
    protocol = cell.protocol
    device = pick_device(options.device or protocol.train.device)
    torch.manual_seed(cell.seed)  # model initialisation and the training attack's random starts
    splits = load_splits(protocol, options.data_dir)
    splits = (splits if cell.trial is None else splits.sealed()).to(device)
    student = create(
        "architecture", cell.student, num_classes=splits.num_classes, in_channels=splits.input_shape[0]
    ).to(device)
    method = fresh_method(cell)
    names = dict(zip(method.teacher_roles[:1], [cell.teacher])) | cell.extra_teachers
    teachers = {role: load_teacher(teacher_card(name), options.model_dir, device) for role, name in names.items()}
    context = RunContext(cell, run_id, workdir, tracker.uri)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(run_id, metrics, step=epoch)
        pm.hook.epoch_finished(run=context, epoch=epoch, metrics=metrics)
        if after_epoch is not None:
            after_epoch(epoch, metrics)

    progress = epoch_progress(options, f"{position} {cell.variant}")
    trainer = build_trainer(
        protocol,
        method,
        student,
        splits,
        device=device,
        workdir=workdir,
        teachers=teachers,
        seed=cell.seed,
        run_id=run_id,
        on_epoch=on_epoch,
        progress=progress,
    )
    tracker.set_tags(
        run_id,
        {schema.DEVICE: str(device), **schema.timing_tags(device_identity(device)["device"], torch.get_num_threads())},
    )
    say(options, f"[bold]{position} {'resume' if trainer.resumes else 'train'}[/] {cell.label} [dim](run {run_id})[/]")
    pm.hook.run_started(run=context)
    trained: TrainOutcome | None = None
    try:
        trained = trainer.fit()
    except StopTraining:
        pass
    finally:
        if progress is not None:
            progress.close()
    if trained is not None:
        tracker.set_tags(run_id, schema.training_tags(trained.precision, trained.channels_last))
    # the engine journals an epoch's metrics after its checkpoint: a kill in between leaves that epoch only in the
    # checkpoint's history, from which it is logged now (once: the journal then has it)
    for entry in tracker.journal.epochs_missing(run_id, trainer.history, schema.TRAIN_LOSS):
        tracker.log_metrics(run_id, {k: v for k, v in entry.items() if k != "epoch"}, step=int(entry["epoch"]))
    return Trained(student, splits, device, teachers, trained, list(trainer.history))


def train_and_evaluate(
    cell: Cell, tracker: JournaledTracker, options: RunOptions, run_id: str, workdir: Path, position: str
) -> CellOutcome:
    """Train the cell (`train_cell`), then evaluate every selection on the test split, diagnose, log and finish."""
    started = time.perf_counter()
    protocol = cell.protocol
    result = train_cell(cell, tracker, options, run_id, workdir, position)
    trained_at = time.perf_counter()
    student, splits, device, trained = result.student, result.splits, result.device, result.outcome
    assert trained is not None  # only an `after_epoch` hook stops training early
    context = RunContext(cell, run_id, workdir, tracker.uri)
    reference, unavailable = reference_teacher(cell, result.teachers, options, device)
    probe = None if reference is None else TeacherProbe(reference, protocol.eval.batch_size or 250)
    if probe is None:
        tracker.set_tags(run_id, {schema.TRANSFERABILITY: f"unavailable: {unavailable}"})
    metrics, per_example, flags = evaluate_selections(student, trained, cell, splits, device, workdir, probe)
    if protocol.eval.diagnostics:
        from ..diagnostics.diagnose import diagnose

        diagnostics = diagnose(
            student, protocol, *test_points(protocol, splits.test), batch_size=int(metrics[schema.TEST_BATCH_SIZE])
        )
        metrics.update(diagnostics.metrics)
        flags["last"] = [*flags["last"], *diagnostics.flags]  # the diagnostics describe the last checkpoint
    tracker.set_tags(
        run_id, {schema.tag(FLAG_TAGS[selection]): join_flags(codes) for selection, codes in flags.items()}
    )
    try:
        metrics.update(specialization(cell, student, reference, splits))
    except ConfigError as exc:  # a diagnostic: an architecture without stage views skips it, and says so
        tracker.set_tags(run_id, {schema.SPECIALIZATION: f"unavailable: {exc}"})
        say(options, f"[yellow]{position} student specialization unavailable: {exc}[/]")
    metrics.update(trained.cost)
    metrics[schema.TRAIN_SECONDS] = sum(h[schema.TRAIN_EPOCH_SECONDS] for h in trained.history)
    if not trained.resumed_from:  # this process ran the whole cell: its wall times predict the next of its kind
        metrics[schema.CELL_TRAIN_SECONDS] = trained_at - started
        metrics[schema.CELL_EVAL_SECONDS] = time.perf_counter() - trained_at
    tracker.log_metrics_once(run_id, metrics, step=protocol.train.epochs)
    per_example.to_parquet(workdir / "per_example.parquet", index=False)
    tracker.log_artifact(run_id, workdir / "per_example.parquet")
    tracker.log_artifact(run_id, workdir / "per_class.csv")
    for checkpoint in (trained.last_path, trained.best_path, trained.swa_path):  # swa: with train.swa_start
        if checkpoint is not None:
            tracker.log_artifact(run_id, checkpoint, "checkpoints")
    tracker.finish(run_id, "FINISHED")
    pm.hook.run_finished(run=context, result=metrics)
    say(options, f"{position} {_done_line(cell, metrics, flags['last'])}")
    return CellOutcome(cell, "finished", run_id, metrics, resumed_from=trained.resumed_from)
