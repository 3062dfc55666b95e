"""Running suites: expand cells, validate everything up front, then train-and-evaluate each cell into its
own MLflow run, idempotently.

A FINISHED run with the same cell key is skipped; an unfinished one (killed, interrupted, failed) is
resumed from its last checkpoint in the same MLflow run. A failing cell is marked FAILED with its traceback
as an artifact and the suite goes on; the caller gets a report with every cell's outcome.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from .attack_traits import format_accuracies
from .config import Cell, Suite, flatten, to_toml
from .data import load_splits
from .engine import Trainer, TrainSetup, pick_device
from .errors import ConfigError, MissingTeacherError
from .attacks import preserved_rng
from .evaluation import Evaluation, evaluate, test_points
from .flags import FLAG_TAGS, join_flags
from .plugins import get_registry, pm
from .selection_metrics import per_class_frame, selection_metrics
from .teachers import (TeacherCard, build_teacher, default_model_dir, load_teacher, missing_teacher_message,
                       teacher_path)
from .tracking import TAG_PREFIX, Tracker, git_sha
from .transfer import TeacherProbe

if TYPE_CHECKING:
    from .journal import JournaledTracker

__all__ = ["RunOptions", "CellOutcome", "RunContext", "expand_cells", "prepare", "run_suite", "run_cell", "suite_status"]

NO_TEACHER = "none"


@dataclass
class RunOptions:
    results: Path = Path("rkdbench-results")
    model_dir: Path = field(default_factory=default_model_dir)
    build_teachers: bool = False
    device: str | None = None  # None: the protocol's train.device
    console: Any = None  # a rich Console, or None for silence
    data_dir: Path | None = None  # None: $RKDBENCH_DATA_DIR or ~/.cache/rkdbench/data (protocols' data_root wins)
    shard: tuple[int, int] = (0, 1)  # (index, count): deprecated; N workers on one store share the work
    workers: int = 1  # local worker processes (`executors.local`); 1: this process runs the cells
    executor: str = "local"  # local: this process (or `workers` processes); ray: one Ray task per cell
    address: str | None = None  # the Ray cluster (auto or HOST:PORT); None: a local cluster sized to the machine


@dataclass
class RunContext:
    """What observer hooks see: the cell, its MLflow run id and working folder."""

    cell: Cell
    run_id: str
    workdir: Path
    tracking_uri: str


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # finished | skipped | failed | held | elsewhere | undelivered (see `executors.serial`)
    run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    resumed_from: int = 0


def expand_cells(suite: Suite) -> list[Cell]:
    """methods x students x teachers x seeds, each validated against the registry (unknown names, bad params)."""
    registry = get_registry()
    protocol = suite.protocol
    registry.get("dataset", protocol.section("protocol")["dataset"])
    for label, spec in protocol.section("eval")["attacks"].items():
        params = {k: v for k, v in spec.items() if k != "attack"}
        try:
            registry.get("attack", spec["attack"]).instantiate(norm=protocol.section("threat")["norm"],
                                                               eps=float(protocol.section("threat")["eps"]), **params)
        except ConfigError as exc:
            raise ConfigError(f"{protocol.source}: eval.attacks.{label}: {exc}") from None
    teachers = suite.teachers or ([protocol.section("protocol")["teacher"]] if "teacher" in protocol.section("protocol") else [])
    for teacher in [*teachers, *suite.teacher_roles.values()]:
        registry.get("teacher", teacher)
    for student in suite.students:
        registry.get("architecture", student)
    cells: list[Cell] = []
    for method_name in suite.methods:
        component = registry.get("method", method_name)
        overrides = suite.method_params.get(method_name, {})
        method = component.instantiate(**overrides)
        method_teachers = teachers if method.uses_teacher else [NO_TEACHER]
        if method.uses_teacher and not teachers:
            raise ConfigError(f"method {method_name!r} needs a teacher, but protocol {protocol.name!r} names none "
                              f"and suite {suite.name!r} gives no `teachers`")
        extra_roles = method.teacher_roles[1:]
        missing = [role for role in extra_roles if role not in suite.teacher_roles]
        if missing:
            raise ConfigError(f"{suite.source}: method {method_name!r} needs a {missing[0]!r} teacher; add it as "
                              f"[suite.teacher_roles] {missing[0]} = \"<teacher id>\" (teachers: "
                              f"{', '.join(registry.names('teacher'))})")
        extra = {role: suite.teacher_roles[role] for role in extra_roles}
        for student in suite.students:
            for teacher in method_teachers:
                for seed in suite.seeds:
                    cells.append(Cell(protocol=protocol, method=method_name, method_params=method.describe(),
                                      method_version=f"{component.dist}:{component.version}:{method.version}",
                                      student=student, teacher=teacher, seed=seed, suite=suite.name,
                                      method_overrides=dict(overrides), extra_teachers=extra))
    return cells


def _teacher_card(name: str) -> TeacherCard:
    return get_registry().get("teacher", name).obj


def prepare(cells: list[Cell], tracker: Tracker, options: RunOptions) -> None:
    """Everything that can fail before training: the tracking store, and teachers (built if allowed)."""
    tracker.check_reachable()
    needed = {c.teacher for c in cells if c.teacher != NO_TEACHER} | {t for c in cells for t in c.extra_teachers.values()}
    for name in sorted(needed):
        card = _teacher_card(name)
        path = teacher_path(card, options.model_dir)
        if path.is_file():
            continue
        if not (options.build_teachers and card.recipe is not None):
            raise MissingTeacherError(missing_teacher_message(card, path))
        _say(options, f"[bold]building teacher[/] {name} (cached in {options.model_dir}; done once)")
        device = pick_device(options.device or "auto")
        protocol = cells[0].protocol
        n = int(protocol.section("eval")["n_examples"]) or None
        # evaluated as the suite evaluates its students, so the leaderboard's AA gap reuses this measurement
        eval_set = {k: v for k, v in protocol.overrides.items() if k.startswith("eval.")}
        measured = build_teacher(card, options.model_dir, device, n_examples=n, progress=epoch_progress(options, name),
                                 data_dir=options.data_dir, eval_set=eval_set)
        accuracies = format_accuracies(measured, measured["attacks"])  # whatever the protocol's labels are
        _say(options, f"teacher {name}: {accuracies} on {measured['n_examples']} test points "
                      f"({measured['train_seconds']:.0f}s training, {measured['eval_seconds']:.0f}s evaluation)")


def _say(options: RunOptions, message: str) -> None:
    if options.console is not None:
        options.console.print(message)


class EpochProgress:
    """Per-epoch progress of one training run: a live bar with ETA on a terminal, one line per epoch
    otherwise (logs, CI). Call it after each epoch; `close()` ends the bar (also after a failure)."""

    def __init__(self, console: Any, label: str) -> None:
        self.console, self.label = console, label
        self._bar = None
        self._task = None

    def __call__(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        summary = (f"loss {metrics['train.loss']:.3f}, val clean {metrics['val.clean_acc']:.1%}, "
                   f"val PGD {metrics['val.pgd_acc']:.1%}")
        if not self.console.is_terminal:
            self.console.print(f"  {self.label} epoch {epoch}/{epochs}: {summary} "
                               f"({metrics['train.epoch_seconds']:.1f}s)", highlight=False)
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=epochs, completed=epoch - 1)
        self._bar.update(self._task, completed=epoch, description=f"{self.label} epoch {epoch}: {summary}")
        if epoch >= epochs:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def epoch_progress(options: RunOptions, label: str) -> EpochProgress | None:
    return None if options.console is None else EpochProgress(options.console, label)


def _tags(cell: Cell) -> dict[str, str]:
    component = get_registry().get("method", cell.method)
    return {
        f"{TAG_PREFIX}kind": "cell", f"{TAG_PREFIX}cell": cell.key, f"{TAG_PREFIX}protocol": cell.protocol.name,
        f"{TAG_PREFIX}protocol_hash": cell.protocol.hash, f"{TAG_PREFIX}protocol_overrides": str(cell.protocol.overrides),
        f"{TAG_PREFIX}method": cell.method, f"{TAG_PREFIX}method_variant": cell.variant,
        f"{TAG_PREFIX}student": cell.student, f"{TAG_PREFIX}teacher": cell.teacher, f"{TAG_PREFIX}seed": str(cell.seed),
        f"{TAG_PREFIX}suite": cell.suite, f"{TAG_PREFIX}plugin": component.dist,
        **{f"{TAG_PREFIX}teacher.{role}": name for role, name in cell.extra_teachers.items()},
        f"{TAG_PREFIX}plugin_version": component.version, f"{TAG_PREFIX}git_sha": git_sha(),
    }


def _params(cell: Cell) -> dict[str, Any]:
    params = {f"protocol.{k}": v for k, v in flatten(cell.protocol.data).items()}
    params.update({f"method.{k}": v for k, v in cell.method_params.items()})
    params.update({"cell.method": cell.method, "cell.student": cell.student, "cell.teacher": cell.teacher,
                   "cell.seed": cell.seed, "cell.method_version": cell.method_version})
    return params


def _evaluate_selections(trainer: Trainer, cell: Cell, splits, device, probe: TeacherProbe | None = None
                         ) -> tuple[dict[str, float], pd.DataFrame, dict[str, list[str]]]:
    """Evaluate `last` and (if asked) `best-val` and `swa` (the weight-averaged student); identical weights are
    evaluated once. Each selection's attack chunks are saved in `<workdir>/eval-<selection>/`, so a cell killed
    mid-evaluation resumes where it stopped. Each selection also gets worst-class and (with a teacher `probe`)
    transferability metrics; the per-class counts are written to `<workdir>/per_class.csv`."""
    from .checkpoint import load_verified

    protocol = cell.protocol
    x, y = test_points(protocol, splits.test)
    student = trainer.s.student
    state = {selection: trainer.s.workdir / f"eval-{selection}" for selection in ("last", "best-val", "swa")}

    def evaluate_weights(weights: dict, selection: str) -> Evaluation:
        last_state = {k: v.clone() for k, v in student.state_dict().items()}
        student.load_state_dict(weights)
        try:
            return evaluate(student, protocol, x, y, state_dir=state[selection], probe=probe)
        finally:
            student.load_state_dict(last_state)  # later diagnostics describe the last checkpoint

    results: dict[str, Evaluation] = {"last": evaluate(student, protocol, x, y, state_dir=state["last"], probe=probe)}
    last_epoch = int(protocol.section("train")["epochs"]) - 1
    metrics = {f"test.{k}": v for k, v in results["last"].metrics.items()}
    metrics["test.n_examples"] = float(len(y))
    metrics["test.batch_size"] = float(results["last"].batch_size)  # chosen from memory when the protocol says 0
    if "best-val" in protocol.section("eval")["selections"]:
        best = load_verified(trainer.best_path, map_location=device)
        if int(best["epoch"]) == last_epoch:
            results["best-val"] = results["last"]
        else:
            results["best-val"] = evaluate_weights(best["model"], "best-val")
        metrics.update({f"best_val.{k}": v for k, v in results["best-val"].metrics.items()})
        metrics["best_val.epoch"] = float(best["epoch"])
    if "swa" in protocol.section("eval")["selections"]:
        averaged = load_verified(trainer.swa_path, map_location=device)
        results["swa"] = evaluate_weights(averaged["model"], "swa")
        metrics.update({f"swa.{k}": v for k, v in results["swa"].metrics.items()})
        metrics["swa.n_averaged"] = float(averaged["count"])
    for selection, evaluation in results.items():
        prefix = {"last": "test.", "best-val": "best_val.", "swa": "swa."}[selection]
        metrics.update({f"{prefix}{k}": v for k, v in selection_metrics(evaluation, y).items()})
    per_class_frame(results, y).to_csv(trainer.s.workdir / "per_class.csv", index=False)
    frames = []
    for selection, evaluation in results.items():
        frame = pd.DataFrame({k: v.numpy() for k, v in evaluation.per_example.items()})
        frame.insert(0, "y", y.cpu().numpy())
        frame.insert(0, "index", range(len(frame)))
        frame.insert(0, "selection", selection)
        frames.append(frame)
    flags = {selection: evaluation.flags for selection, evaluation in results.items()}
    return metrics, pd.concat(frames, ignore_index=True), flags


def _reference_teacher(cell: Cell, teachers: dict, options: RunOptions, device) -> tuple[Any, str]:
    """The teacher the diagnostics compare the student with: the cell's (primary) teacher, or, for teacher-free
    methods, the protocol's teacher when its file is in the model dir; else (None, why not)."""
    teacher = next(iter(teachers.values()), None)
    if teacher is not None:
        return teacher, ""
    reference = cell.protocol.section("protocol").get("teacher")
    if not reference:
        return None, f"method {cell.method!r} has no teacher and protocol {cell.protocol.name!r} names none"
    card = _teacher_card(reference)
    path = teacher_path(card, options.model_dir)
    if not path.is_file():
        return None, f"method {cell.method!r} has no teacher and the protocol's teacher {reference!r} is not at {path}"
    return load_teacher(card, options.model_dir, device), ""


def _specialization(cell: Cell, student, teacher, splits) -> dict[str, float]:
    """Teacher-student neuron correlation of the final student against its reference teacher (`_reference_teacher`),
    on clean test points and the student's PGD points."""
    from .specialization import specialization_report

    protocol = cell.protocol
    if teacher is None:
        return {}
    x, y = test_points(protocol, splits.test)
    threat = protocol.section("threat")
    student.eval()
    with preserved_rng():
        return specialization_report(teacher, student, x, y, float(threat["eps"]), threat["norm"],
                                     seed=int(protocol.section("eval")["seed"]))


def protocol_experiment(tracker: Tracker, protocol) -> str:
    """The protocol's MLflow experiment id (created on first use)."""
    return tracker.experiment_id(protocol.experiment_name, {f"{TAG_PREFIX}protocol": protocol.name,
                                                            f"{TAG_PREFIX}protocol_hash": protocol.hash})


def run_cell(cell: Cell, tracker: Tracker, options: RunOptions, position: str = "") -> CellOutcome:
    """Train and evaluate one cell into its MLflow run, exactly once whatever the number of workers (local
    processes, Ray tasks): a FINISHED cell is skipped; otherwise the cell's lease is taken (`lease`; status
    "held" when a live worker has it), the store is re-checked under it (FINISHED: skip, unfinished: resume in
    the same run, none: create), and everything the cell logs goes through its journal (`journal`)."""
    from .lease import CellLease

    protocol = cell.protocol
    experiment_id = protocol_experiment(tracker, protocol)
    existing = tracker.find_run(experiment_id, cell.key)
    if existing is not None and existing.info.status == "FINISHED":
        return _skipped(cell, existing, options, position)
    workdir = options.results / "cells" / cell.key
    lease = CellLease(workdir)
    if not lease.acquire():
        _say(options, f"[dim]{position} held {cell.label}: by {lease.holder() or 'another worker'}[/]")
        return CellOutcome(cell, "held", existing.info.run_id if existing else "", error=lease.holder())
    try:
        return _run_leased(cell, tracker, options, position, experiment_id, workdir)
    finally:
        lease.release()


def _skipped(cell: Cell, run, options: RunOptions, position: str) -> CellOutcome:
    _say(options, f"[dim]{position} skip {cell.label}: finished in run {run.info.run_id}[/]")
    return CellOutcome(cell, "skipped", run.info.run_id)


def _run_leased(cell: Cell, tracker: Tracker, options: RunOptions, position: str, experiment_id: str,
                workdir: Path) -> CellOutcome:
    from .journal import JournaledTracker

    existing = tracker.find_run(experiment_id, cell.key)  # again: a worker may have finished it meanwhile
    if existing is not None and existing.info.status == "FINISHED":
        return _skipped(cell, existing, options, position)
    journaled = JournaledTracker(tracker, workdir)
    if existing is not None:
        run_id = existing.info.run_id
        if journaled.journal.terminal_status(run_id) == "FINISHED":  # trained; only its logging was cut short
            _say(options, f"{position} deliver {cell.label}: trained earlier, logging it from "
                          f"{journaled.journal.path}")
            return _delivered(journaled, CellOutcome(cell, "finished", run_id, journaled.journal.metrics(run_id)),
                              options, position)
        journaled.mark_running(run_id)
    else:
        journaled.journal.discard_pending()  # entries for a run this store does not have
        run_id = tracker.create_run(experiment_id, cell.label.replace(" / ", "-").replace(" ", ""), _tags(cell))
        journaled.log_params(run_id, _params(cell))
        (workdir / "config.toml").write_text(to_toml({"cell": {"key": cell.key, "method": cell.method,
                                                               "student": cell.student, "teacher": cell.teacher,
                                                               "seed": cell.seed, "suite": cell.suite},
                                                      "method_params": cell.method_params, **cell.protocol.data}))
        journaled.log_artifact(run_id, workdir / "config.toml")
    try:
        outcome = _train_and_evaluate(cell, journaled, options, run_id, workdir, position)
    except KeyboardInterrupt:
        journaled.finish(run_id, "KILLED")
        raise
    except Exception as exc:
        (workdir / "traceback.txt").write_text("".join(traceback.format_exception(exc)))
        journaled.log_artifact(run_id, workdir / "traceback.txt")
        journaled.finish(run_id, "FAILED")
        _say(options, f"[red]{position} FAILED {cell.label}: {type(exc).__name__}: {exc}[/]")
        outcome = CellOutcome(cell, "failed", run_id, error=f"{type(exc).__name__}: {exc}")
    return _delivered(journaled, outcome, options, position)


def _delivered(journaled, outcome: CellOutcome, options: RunOptions, position: str) -> CellOutcome:
    """The outcome once the cell's journal is in MLflow; "undelivered" (one line) when the store still does not
    answer: the next `rkdbench run` delivers it without retraining."""
    if journaled.deliver():
        return outcome
    pending = len(journaled.journal.pending)
    outcome.status = "undelivered"
    why = journaled.last_error if journaled.rejected else f"tracking store {journaled.uri} unreachable " \
                                                          f"({journaled.last_error})"
    outcome.error = (f"{why}; {pending} log entries kept in {journaled.journal.path}: run the suite again to "
                     f"deliver them (nothing is retrained)")
    _say(options, f"[red]{position} undelivered {outcome.cell.label}: {outcome.error}[/]")
    return outcome


def _train_and_evaluate(cell: Cell, tracker: JournaledTracker, options: RunOptions, run_id: str, workdir: Path,
                        position: str) -> CellOutcome:
    from . import create

    protocol = cell.protocol
    device = pick_device(options.device or protocol.section("train").get("device", "auto"))
    torch.manual_seed(cell.seed)  # model initialisation and the training attack's random starts
    splits = load_splits(protocol, options.data_dir).to(device)
    student = create("architecture", cell.student, num_classes=splits.num_classes,
                     in_channels=splits.input_shape[0]).to(device)
    method = create("method", cell.method, **cell.method_overrides)
    names = dict(zip(method.teacher_roles[:1], [cell.teacher])) | cell.extra_teachers
    teachers = {role: load_teacher(_teacher_card(name), options.model_dir, device) for role, name in names.items()}
    context = RunContext(cell, run_id, workdir, tracker.uri)
    setup = TrainSetup(protocol=protocol, method=method, student=student, teachers=teachers, splits=splits,
                       seed=cell.seed, device=device, workdir=workdir, run_id=run_id)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(run_id, metrics, step=epoch)
        pm.hook.epoch_finished(run=context, epoch=epoch, metrics=metrics)

    progress = epoch_progress(options, f"{position} {cell.variant}")
    trainer = Trainer(setup, on_epoch=on_epoch, progress=progress)
    tracker.set_tags(run_id, {f"{TAG_PREFIX}device": str(device), f"{TAG_PREFIX}precision": "bf16" if trainer.bf16 else "fp32",
                              f"{TAG_PREFIX}channels_last": str(trainer.channels_last).lower()})
    resumed = trainer.last_path.exists()
    _say(options, f"[bold]{position} {'resume' if resumed else 'train'}[/] {cell.label} [dim](run {run_id})[/]")
    pm.hook.run_started(run=context)
    try:
        outcome = trainer.fit()
    finally:
        if progress is not None:
            progress.close()
    # the engine journals an epoch's metrics after its checkpoint: a kill in between leaves that epoch only in the
    # checkpoint's history, from which it is logged now (once: the journal then has it)
    for entry in tracker.journal.epochs_missing(run_id, outcome.history, "train.loss"):
        tracker.log_metrics(run_id, {k: v for k, v in entry.items() if k != "epoch"}, step=int(entry["epoch"]))
    reference, unavailable = _reference_teacher(cell, teachers, options, device)
    probe = None if reference is None else TeacherProbe(reference, int(protocol.section("eval")["batch_size"]) or 250)
    if probe is None:
        tracker.set_tags(run_id, {f"{TAG_PREFIX}transferability": f"unavailable: {unavailable}"})
    metrics, per_example, flags = _evaluate_selections(trainer, cell, splits, device, probe)
    if protocol.section("eval").get("diagnostics", False):
        from .diagnostics import diagnose

        diagnostics = diagnose(student, protocol, *test_points(protocol, splits.test),
                               batch_size=int(metrics["test.batch_size"]))
        metrics.update(diagnostics.metrics)
        flags["last"] = [*flags["last"], *diagnostics.flags]  # the diagnostics describe the last checkpoint
    tracker.set_tags(run_id, {f"{TAG_PREFIX}{FLAG_TAGS[selection]}": join_flags(codes)
                              for selection, codes in flags.items()})
    try:
        metrics.update(_specialization(cell, student, reference, splits))
    except ConfigError as exc:  # a diagnostic: an architecture without stage views skips it, and says so
        tracker.set_tags(run_id, {f"{TAG_PREFIX}specialization": f"unavailable: {exc}"})
        _say(options, f"[yellow]{position} student specialization unavailable: {exc}[/]")
    metrics.update(outcome.cost)
    metrics["train.seconds"] = sum(h["train.epoch_seconds"] for h in outcome.history)
    tracker.log_metrics(run_id, metrics, step=int(protocol.section("train")["epochs"]))
    per_example.to_parquet(workdir / "per_example.parquet", index=False)
    tracker.log_artifact(run_id, workdir / "per_example.parquet")
    tracker.log_artifact(run_id, workdir / "per_class.csv")
    tracker.log_artifact(run_id, trainer.last_path, "checkpoints")
    tracker.log_artifact(run_id, trainer.best_path, "checkpoints")
    if trainer.swa_path.is_file():  # the weight-averaged student a protocol with train.swa_start evaluates
        tracker.log_artifact(run_id, trainer.swa_path, "checkpoints")
    tracker.finish(run_id, "FINISHED")
    pm.hook.run_finished(run=context, result=metrics)
    _say(options, f"{position} done {cell.label}: clean {metrics['test.clean_acc']:.1%}, "
                  + ", ".join(f"{k[5:-4]} {v:.1%}" for k, v in metrics.items()
                              if k.startswith("test.") and k.endswith("_acc") and k != "test.clean_acc"
                              and "." not in k[5:] and not k.startswith("test.worst_class_"))  # per-stage AutoAttack numbers stay in MLflow
                  + (f" [yellow]flags: {join_flags(flags['last'])}[/]" if flags["last"] else ""))
    return CellOutcome(cell, "finished", run_id, metrics, resumed_from=outcome.resumed_from)


def run_suite(suite: Suite, options: RunOptions) -> list[CellOutcome]:
    """Run every cell (validated and prepared first); failures are recorded and the suite goes on. Any number of
    processes may run one suite on one store: they share the cells (`run_cell` is exactly-once)."""
    if options.workers > 1:
        from .executors.local import run_local

        return run_local(suite, options, options.workers)
    from .executors.serial import run_cells

    index, count = options.shard
    cells = expand_cells(suite)[index::count]
    tracker = Tracker(options.results)
    if options.executor == "ray":
        from .executors.ray_executor import run_on_ray

        return run_on_ray(cells, tracker, options, prepare)
    prepare(cells, tracker, options)
    return run_cells(cells, tracker, options)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


def suite_status(outcomes: list[CellOutcome], total: int, seconds: list[float]) -> str:
    """One line after each cell: counts by status, time spent, and an ETA from the mean time of the cells that
    ran (an estimate: methods differ in cost, so it is least accurate early in a mixed suite)."""
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("finished", "skipped", "failed", "elsewhere", "undelivered")}
    remaining = total - len(outcomes)
    extra = "".join(f", {counts[status]} {label}" for status, label in (("elsewhere", "by other workers"),
                                                                         ("undelivered", "undelivered"))
                    if counts[status])
    line = (f"suite: {len(outcomes)}/{total} cells ({counts['finished']} finished, {counts['skipped']} skipped, "
            f"{counts['failed']} failed{extra}), {_minutes(sum(seconds))} spent")
    if remaining and seconds:
        line += f", ~{_minutes(sum(seconds) / len(seconds) * remaining)} to go for {remaining} more"
    return line
