"""Trials as cells: `rkdbench tune` runs every study of a suite through the executors of `rkdbench run`, then the
selected configurations as ordinary cells.

**Rounds.** The driver (the `rkdbench tune` process) asks Optuna for trials itself: per unfinished study it fails
stale trials and re-queues interrupted ones, asks for the trials left (queued retries first; every one at once for a
sampler that does not adapt to results, `qmc` and `random`, else `ceil(parallelism / studies)` per round so that TPE
sees earlier rounds), lets `study.draw` claim each (the exactly-N rule of `tuning.study`) and turns it into its cell
(`trial_cell`: the values that differ from trial 0's as overrides of the official cell of the study's seed, and a
`TrialSpec`, so its key is its configuration's within its study). `executor.run` runs the round's cells as any
suite's (this process, local workers, Ray tasks): the lease, journal and resume of `run_cell` make each exactly-once.
While they run, the driver beats its trials' heartbeat (Optuna beats only inside `study.optimize`): a killed driver's
trials go stale and are re-queued with their values by the next driver, and map to the same cells, which resume or
are found finished. Then each trial is told what its cell's run holds: the objective at its last epoch, PRUNED when
its pruner stopped it (`PruningReporter`, in the worker), FAIL when the cell failed (retried; after
`Heartbeat.max_retry` failures in a row the study is given up for this invocation).

**Selection.** `select` takes the best trial (ties go to trial 0, the official recipe) and builds its configuration's
cells with the suite's seeds (trial 0: exactly the official cells); `record_study` logs the study as a run of kind
`study` in the suite protocol's experiment (budget, sampler, the selected values and cells, the complete trials'
values as the metric history `study.trial_value`, the epochs and seconds the trials trained): the tuned leaderboard's
source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Cell, Suite, load_protocol
from ..config.files import canonical_hash
from ..config.suite import TrialSpec
from ..contracts.build import build_method, method_of
from ..plugins import get_registry
from ..run.cell import protocol_experiment
from ..run.executor import Executor
from ..run.lease import CellLease
from ..run.loop import POLL_SECONDS
from ..run.options import RunOptions
from ..run.prepare import prepare
from ..run.progress import say
from ..run.remote import cell_run
from ..tracking import Tracker, git_sha, schema
from .objective import objective_value
from .plan import StudyPlan, plan_study
from .samplers import SAMPLERS, make_pruner
from .storage import Heartbeat, open_storage, storage_lock
from .study import (
    TrialRun,
    Verdict,
    best_trial,
    draw,
    fail_stale_trials,
    finished_trials,
    open_study,
    requeue_failed,
    split_params,
    tally,
)

__all__ = [
    "RUN_ID",
    "TuningStudy",
    "StudyResult",
    "plan_studies",
    "configured_cell",
    "trial_cell",
    "PruningReporter",
    "run_studies",
    "select",
    "record_study",
    "study_key",
]

RUN_ID = schema.tag("run_id")  # Optuna user attribute of a told trial: the MLflow run of its cell (for the dashboard)


@dataclass(frozen=True)
class TuningStudy:
    """One study of a suite: its plan and the suite's cells of its (method, student, teacher), one per seed, each
    the official configuration."""

    plan: StudyPlan
    cells: tuple[Cell, ...]

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def base(self) -> Cell:
        """The official configuration's cell with the trials' training seed (the study's seed)."""
        return dataclasses.replace(self.cells[0], seed=self.plan.identity.seed)


@dataclass
class StudyResult:
    """How a study ended in this invocation: finished trials, the best one and its selected cells (None while the
    study is unfinished), or why it was given up."""

    study: TuningStudy
    finished: int = 0
    best: Any = None  # optuna FrozenTrial
    selected: list[Cell] = field(default_factory=list)
    error: str = ""


def plan_studies(
    suite: Suite,
    cells: Sequence[Cell],
    *,
    budget: int | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    objective: str | None = None,
    pruner: str | None = None,
) -> list[TuningStudy]:
    """One study per (method, student, teacher, extra teachers) of the suite's cells, in their order; bad options or
    spaces are one ConfigError line here, before anything is created (`plan.plan_study`)."""
    registry = get_registry()
    protocol = suite.protocol
    dataset = registry.get("dataset", protocol.header.dataset).instantiate()
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        identity = canonical_hash([cell.method, cell.method_params, cell.student, cell.teacher, cell.extra_teachers])
        groups.setdefault(identity, []).append(cell)
    studies = []
    for group in groups.values():
        first = group[0]
        plan = plan_study(
            protocol,
            registry.get("method", first.method).obj,
            first.method_params,
            first.student,
            first.teacher,
            dataset,
            extra_teachers=first.extra_teachers,
            budget=budget,
            sampler=sampler,
            seed=seed,
            objective=objective,
            pruner=pruner,
        )
        studies.append(TuningStudy(plan, tuple(group)))
    return studies


def configured_cell(cell: Cell, protocol_set: dict[str, Any], method_set: dict[str, Any]) -> Cell:
    """`cell` with protocol overrides (`train.lr = ...`) and method overrides (`temperature = ...`) added to the
    suite's: a new protocol (its own hash and experiment, as `--set` gives) and method object when they change."""
    protocol = cell.protocol
    if protocol_set:
        loaded = load_protocol(protocol.source, {**protocol.overrides, **protocol_set}, where="tuning")
        protocol = dataclasses.replace(loaded, resources=protocol.resources, tune=protocol.tune)
    overrides = {**cell.method_overrides, **method_set}
    method = build_method(cell.method, overrides) if method_set else method_of(cell)
    return dataclasses.replace(
        cell, protocol=protocol, method_params=method.describe(), method_overrides=overrides, built_method=method
    )


def trial_cell(study: TuningStudy, params: dict[str, Any], number: int, reporter: Any = None) -> Cell:
    """The cell of a trial with these values: the official cell of the study's seed with the values that differ
    from trial 0's as overrides (`split_params`), keyed within its study (`TrialSpec`, `config.suite.trial_key`)."""
    protocol_set, method_set = split_params(params, study.plan.defaults)
    base = study.base
    spec = TrialSpec(study.name, number, base.protocol, study.plan.objective.metric, dict(params), reporter)
    return dataclasses.replace(configured_cell(base, protocol_set, method_set), trial=spec)


_OPEN_TRIALS: dict[tuple[str, str, int], Any] = {}  # a worker's trials, opened once per process


@dataclass(frozen=True)
class PruningReporter:
    """What a trial's cell carries to its worker for the pruner: the study storage, the study and the trial.
    `report(epoch, value)` records the epoch's objective as the trial's intermediate value and answers whether the
    pruner stops it; a trial no longer running (its driver died and it was retried under a new number) is not
    pruned: its cell trains to the end and the retried trial reads the result."""

    url: str
    study: str
    pruner: str
    trial_id: int

    def report(self, epoch: int, value: float) -> bool:
        import optuna

        key = (self.url, self.study, self.trial_id)
        if key not in _OPEN_TRIALS:
            loaded = optuna.load_study(
                study_name=self.study, storage=open_storage(self.url), pruner=make_pruner(self.pruner)
            )
            _OPEN_TRIALS[key] = optuna.trial.Trial(loaded, self.trial_id)
        trial = _OPEN_TRIALS[key]
        try:
            trial.report(value, step=epoch)
            return bool(trial.should_prune())
        except optuna.exceptions.UpdateFinishedTrialError:
            return False


@dataclass
class _Asked:
    """A trial asked in this round: its study, Optuna trial, drawn values and cell."""

    study: TuningStudy
    trial: Any
    run: TrialRun
    cell: Cell


@contextlib.contextmanager
def _beating(storage: Any, trial_ids: list[int], interval: float) -> Iterator[None]:
    """Beat the heartbeat of `trial_ids` every `interval` seconds while the block runs (the round's cells train)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in trial_ids:
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name="rkdbench-trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_studies(
    studies: Sequence[TuningStudy],
    executor: Executor,
    tracker: Tracker,
    options: RunOptions,
    storage: Any,
    url: str,
    heartbeat: Heartbeat = Heartbeat(),  # noqa: B008 (a frozen value, as `storage.open_storage`'s default)
    poll: float | None = None,
) -> list[StudyResult]:
    """Run rounds of trials through `executor` until every study has its budget of finished trials (the module's
    docstring); returns one result per study, with its selection when it finished."""
    if poll is None:
        poll = float(os.environ.get("RKDBENCH_WAIT_POLL_SECONDS", POLL_SECONDS))
    opened = {s.name: open_study(storage, s.plan.identity, s.plan.defaults, storage_lock(url)) for s in studies}
    results = {s.name: StudyResult(s) for s in studies}
    failures: Counter[str] = Counter()
    slots = max(1, executor.parallelism([s.base for s in studies], options))
    said_waiting = False
    while True:
        active = [s for s in studies if not results[s.name].error and _finished(opened[s.name], s) < s.plan.budget]
        if not active:
            break
        asked = _ask(active, opened, storage, url, math.ceil(slots / len(active)), heartbeat.max_retry)
        if not asked:  # every free slot is held by another driver's running trials: wait for them (or their death)
            if not said_waiting:
                say(options, f"[dim]waiting for trials that other workers run (checking every {poll:g}s)[/]")
                said_waiting = True
            threading.Event().wait(poll)
            continue
        said_waiting = False
        _run_round(asked, executor, tracker, options, storage, heartbeat, failures, results)
    for study in studies:
        result = results[study.name]
        result.finished = min(_finished(opened[study.name], study), study.plan.budget)
        if not result.error:
            result.best, result.selected = select(study, opened[study.name])
    return [results[s.name] for s in studies]


def _finished(optuna_study: Any, study: TuningStudy) -> int:
    return tally(optuna_study.get_trials(deepcopy=False)).finished


def _ask(
    active: list[TuningStudy], opened: dict[str, Any], storage: Any, url: str, per_study: int, max_retry: int
) -> list[_Asked]:
    """This round's trials: per active study, its free slots (queued retries first), at most `per_study` of them
    for an adaptive sampler."""
    from optuna.trial import TrialState

    asked = []
    for study in active:
        optuna_study = opened[study.name]
        fail_stale_trials(optuna_study)
        requeue_failed(optuna_study, max_retry)
        counted = tally(optuna_study.get_trials(deepcopy=False))
        left = counted.free(study.plan.budget) + counted.waiting
        for _ in range(min(per_study, left) if SAMPLERS[study.plan.identity.sampler].adaptive else left):
            with warnings.catch_warnings():  # the driver beats the heartbeat itself (`_beating`)
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = optuna_study.ask()
            # Optuna's private trial id is the storage's key for heartbeats and for a worker's pruning reports
            storage.record_heartbeat(trial._trial_id)
            drawn = draw(trial, study.plan.space, study.plan.budget)
            if isinstance(drawn, Verdict):  # turned away by the exactly-N rule: it runs nothing
                optuna_study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                continue
            reporter = (
                None
                if study.plan.identity.pruner == "none"
                else PruningReporter(url, study.name, study.plan.identity.pruner, trial._trial_id)
            )
            asked.append(_Asked(study, trial, drawn, trial_cell(study, drawn.params, trial.number, reporter)))
    return asked


def _run_round(
    asked: list[_Asked],
    executor: Executor,
    tracker: Tracker,
    options: RunOptions,
    storage: Any,
    heartbeat: Heartbeat,
    failures: Counter[str],
    results: dict[str, StudyResult],
) -> None:
    """Run the round's cells (each key once: trials with equal values share a cell) and tell every trial."""
    from optuna.trial import TrialState

    unique: dict[str, Cell] = {}
    for a in asked:  # the lowest-numbered trial's cell runs a shared configuration (trial 0's: the official one)
        unique.setdefault(a.cell.key, a.cell)
    cells = list(unique.values())
    say(options, f"[bold]tuning round[/]: {len(asked)} trial{'s' if len(asked) != 1 else ''}, {len(cells)} cells")
    try:
        with _beating(storage, [a.trial._trial_id for a in asked], heartbeat.interval):
            executor.run(cells, tracker, options, prepare)
    except BaseException:  # Ctrl-C or a broken executor: the trials end FAILED and are re-queued at the next start
        for a in asked:
            a.trial.study.tell(a.trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    for a in asked:
        optuna_study = a.trial.study
        run, state, value = _trial_result(tracker, a.cell, a.study.plan.objective)
        if run is not None:
            a.trial.set_user_attr(RUN_ID, run)
        if state is None:
            failures[a.study.name] += 1
            optuna_study.tell(a.trial, state=TrialState.FAIL, skip_if_finished=True)
            if failures[a.study.name] > heartbeat.max_retry:
                results[a.study.name].error = (
                    f"study {a.study.name}: {failures[a.study.name]} trials in a row failed (last: "
                    f"{a.cell.label}, run {run or 'none'}); fix the cause and run `rkdbench tune` again"
                )
            continue
        failures[a.study.name] = 0
        if state == schema.TrialState.PRUNED:
            optuna_study.tell(a.trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            optuna_study.tell(a.trial, value, skip_if_finished=True)


def _trial_result(tracker: Tracker, cell: Cell, objective: Any) -> tuple[str | None, str | None, float]:
    """(run id, state, objective value) of a trial's cell from its run in the store; state None when the run is not
    FINISHED (the cell failed, or its logging waits for the store)."""
    run = cell_run(tracker, cell)
    if run is None or run.info.status != "FINISHED":
        return (None if run is None else run.info.run_id), None, math.nan
    state = run.data.tags.get(schema.TRIAL_STATE, schema.TrialState.COMPLETE)
    points = {m.step: m.value for m in sorted(tracker.metric_history(run.info.run_id, objective.metric), key=_order)}
    history = [{objective.metric: points[step]} for step in sorted(points)]
    value = objective_value(objective, history) if history else math.nan
    return run.info.run_id, state, value


def _order(metric: Any) -> tuple[int, int]:
    return metric.step, metric.timestamp


def select(study: TuningStudy, optuna_study: Any) -> tuple[Any, list[Cell]]:
    """The best of the study's first `budget` finished trials and the selected configuration's cells, one per seed
    of the suite (trial 0: the official cells themselves)."""
    best = best_trial(optuna_study, study.plan.budget)
    protocol_set, method_set = split_params(best.params, study.plan.defaults)
    return best, [configured_cell(cell, protocol_set, method_set) for cell in study.cells]


def study_key(study: TuningStudy) -> str:
    """The key of a study's run: its name and budget (a rerun with a larger budget records the study again)."""
    return canonical_hash({"kind": "study", "study": study.name, "budget": study.plan.budget})


def record_study(result: StudyResult, optuna_study: Any, tracker: Tracker, options: RunOptions) -> str:
    """Log the finished study as a run of kind `study` (once: under a lease, skipped when it exists); returns its
    run id."""
    study = result.study
    experiment_id = protocol_experiment(tracker, study.base.home)
    key = study_key(study)
    existing = tracker.find_run(experiment_id, key)
    if existing is not None and existing.info.status == "FINISHED":
        return existing.info.run_id
    lease = CellLease(options.results / "cells" / key)
    while not lease.acquire():  # another driver records the same study now: a moment's work
        threading.Event().wait(0.2)
    try:
        existing = tracker.find_run(experiment_id, key)
        if existing is not None and existing.info.status == "FINISHED":
            return existing.info.run_id
        return _log_study(result, optuna_study, tracker, experiment_id, key)
    finally:
        lease.release()


def _log_study(result: StudyResult, optuna_study: Any, tracker: Tracker, experiment_id: str, key: str) -> str:
    from optuna.trial import TrialState

    study, best = result.study, result.best
    identity = study.plan.identity
    base = study.base
    protocol_set, method_set = split_params(best.params, study.plan.defaults)
    tags = schema.study_tags(
        cell=key,
        protocol=base.protocol.name,
        protocol_hash=base.protocol.hash,
        study=study.name,
        method=base.method,
        variant=base.variant,
        student=base.student,
        teacher=base.teacher,
        suite=base.suite,
        sampler=identity.sampler,
        sampler_seed=identity.seed,
        objective=identity.objective,
        pruner=identity.pruner,
        budget=study.plan.budget,
        selected_trial=best.number,
        selected_values=json.dumps(best.params, sort_keys=True, default=str),
        selected_overrides=json.dumps({**protocol_set, **method_set}, sort_keys=True, default=str),
        tuned_cells=",".join(cell.key for cell in result.selected),
        git_sha=git_sha(),
    )
    run_id = tracker.create_run(experiment_id, f"study-{base.method}-{base.student}", tags)
    tracker.log_params(
        run_id,
        {
            **{f"space.{name}": dist.to_toml() for name, dist in study.plan.space.items()},
            **{f"trial0.{name}": value for name, value in study.plan.defaults.items()},
        },
    )
    finished = finished_trials(optuna_study, study.plan.budget)
    epochs, seconds, devices = 0.0, 0.0, set()
    for trial in finished:
        cell = trial_cell(study, trial.params, trial.number)
        run = tracker.find_run(experiment_id, cell.key)
        if run is not None:
            epochs += run.data.metrics.get(schema.TRIAL_EPOCHS, 0.0)
            seconds += run.data.metrics.get(schema.TRAIN_SECONDS, 0.0)
            devices.add(run.data.tags.get(schema.DEVICE, ""))
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    metrics = {
        "study.trials": float(len(finished)),
        "study.complete": float(len(complete)),
        "study.pruned": float(len(finished) - len(complete)),
        "study.best_value": float(best.value),
        "study.epochs": epochs,
        "study.train_seconds": seconds,
    }
    if devices and all(device.startswith("cuda") for device in devices):
        metrics["study.gpu_hours"] = seconds / 3600
    tracker.log_metrics(run_id, metrics)
    for step, trial in enumerate(complete):  # the budget curve's scores, in trial order
        tracker.log_metrics(run_id, {"study.trial_value": float(trial.value)}, step=step)
    tracker.finish(run_id, "FINISHED")
    return run_id
