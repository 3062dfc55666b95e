"""One study per (method, student, teacher): its identity, trial 0 = the official recipe, and exactly N finished trials
over any number of workers, kills and restarts.

**Identity.** `StudyIdentity.name` hashes what makes two studies comparable or not: the protocol's hash, the method
(name, version, resolved params), student, teachers, the space's hash, sampler, seed, objective and pruner. The budget
is not in it: a rerun with a larger budget extends the same study.

**Trial 0.** `trial_zero` reads each searched parameter's configured value (the protocol's field, the method's resolved
param) and refuses a space that does not contain it; `open_study` enqueues it once, marked with the origin `defaults`.

**Exactly N.** Every trial has an origin: its own number, the trial a heartbeat retry copied (`failed_trial`), or
`defaults`. A trial runs only after `claim`: counting the distinct origins of the trials numbered below it that are
finished (COMPLETE or PRUNED), running or waiting, it runs if its own origin is not among them and fewer than N are;
otherwise it ends FAILED, marked `surplus` or `duplicate`, having run nothing. Trial numbers follow creation, so of
any N + 1 trials that would finish with distinct origins the highest-numbered saw the N others and did not run: at
most N finish. A trial whose worker dies stays RUNNING until its heartbeat is stale, is then failed and re-queued
with its values (a new number, the same origin) and runs again, so at least N finish once workers keep going.

**Exactly once per trial.** A trial's values decide its cell (`split_params` -> protocol and method overrides; the
cell's key contains them; `trial_cell_key` separates it from the ordinary cell of the same configuration, which is
evaluated on the test split), so a retried trial maps to the same cell, which the harness's lease and store resume
or skip: a kill neither loses a trial nor counts it twice.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.files import canonical_hash
from ..config.protocol import SECTIONS, TUNABLE
from ..config.space import Space, space_hash
from ..config.suite import trial_key as trial_cell_key
from ..config.tune import check_contains
from ..errors import ConfigError
from ..tracking import schema
from .budget import check_budget
from .samplers import make_pruner, make_sampler, optuna_experimental, sampler_record

__all__ = [
    "ORIGIN",
    "VERDICT",
    "DEFAULTS_ORIGIN",
    "StudyIdentity",
    "TrialRun",
    "Verdict",
    "Tally",
    "study_space",
    "trial_zero",
    "split_params",
    "trial_cell_key",
    "open_study",
    "origin",
    "claim",
    "tally",
    "requeue_failed",
    "draw",
    "fail_stale_trials",
    "run_trials",
    "finished_trials",
    "best_trial",
]

ORIGIN = schema.TRIAL_ORIGIN  # user attribute: "defaults" on trial 0 (and its retries, which copy user attributes)
VERDICT = schema.TRIAL_VERDICT  # user attribute of a trial that ran nothing: "surplus" or "duplicate"
DEFAULTS_ORIGIN = "defaults"
RETRIED_FROM = "failed_trial"  # the system attribute Optuna's retry callback sets (the original trial's number)


@dataclass(frozen=True)
class StudyIdentity:
    """What identifies a study (and names it): two studies share trials only if all of this is equal."""

    protocol_hash: str
    method: str
    method_version: str
    method_params: Mapping[str, Any]  # the method's resolved params (trial 0's values among them)
    student: str
    teacher: str
    space: Space
    sampler: str
    seed: int
    objective: str
    pruner: str
    extra_teachers: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol_hash": self.protocol_hash,
            "method": self.method,
            "method_version": self.method_version,
            "method_params": dict(self.method_params),
            "student": self.student,
            "teacher": self.teacher,
            "extra_teachers": dict(self.extra_teachers),
            "space_hash": space_hash(self.space),
            "sampler": self.sampler,
            "seed": self.seed,
            "objective": self.objective,
            "pruner": self.pruner,
        }

    @property
    def name(self) -> str:
        """`<method>/<student>/<teacher>/<hash>`: readable in Optuna's dashboard, unique by the hash."""
        return f"{self.method}/{self.student}/{self.teacher}/{canonical_hash(self.as_dict())}"


def study_space(protocol: Any, method_cls: type) -> dict[str, Any]:
    """The space a method is tuned over: the protocol's shared `[tune.space]` and the method's own `space` (already
    checked where each was declared; their names cannot collide: shared names are dotted, parameters are not)."""
    return {**protocol.tune.space, **method_cls.space}


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    return math.isclose(a, b, rel_tol=1e-9) if isinstance(a, float) else bool(a == b)


def trial_zero(protocol: Any, method_params: Mapping[str, Any], space: Space) -> dict[str, Any]:
    """The configured value of every searched parameter (the official recipe, with the suite's settings), refused with
    one ConfigError line when the space does not contain it."""
    attributes = {table: SECTIONS[table][0] for table in TUNABLE}
    values: dict[str, Any] = {}
    for name in space:
        table, dot, field_name = name.partition(".")
        values[name] = getattr(getattr(protocol, attributes[table]), field_name) if dot else method_params[name]
    check_contains(f"{protocol.source}: tuning space", space, values, what="the configured value")
    return values


def split_params(params: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """A trial's values as (protocol overrides `train.lr = ...`, method overrides `temperature = ...`); values equal to
    `base` (trial 0's) are left out, so that one configuration always maps to one cell key. A float within 1e-9
    (relative) of trial 0's counts as equal: the centre of a log range, exp((log a + log b) / 2), comes back with a
    last-bit error, and would otherwise be a configuration, and a protocol, of its own."""
    base = base or {}
    changed = {k: v for k, v in params.items() if k not in base or not _same(base[k], v)}
    return {k: v for k, v in changed.items() if "." in k}, {k: v for k, v in changed.items() if "." not in k}


def origin(trial: Any) -> str:
    """The trial this one stands for: `defaults`, the trial a retry copied, or itself."""
    return str(trial.user_attrs.get(ORIGIN) or trial.system_attrs.get(RETRIED_FROM, trial.number))


class Verdict(enum.Enum):
    RUN = "run"
    SURPLUS = "surplus"  # N origins are already finished, running or waiting ahead of it
    DUPLICATE = "duplicate"  # its origin is already held by a lower-numbered trial (a doubled retry or trial 0)


def _states() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.RUNNING, TrialState.WAITING)


def claim(trials: Iterable[Any], number: int, budget: int) -> Verdict:
    """Whether trial `number` may run (the rule of the module's docstring)."""
    finished, live = _states()
    trials = list(trials)
    mine = next(origin(t) for t in trials if t.number == number)
    ahead = {origin(t) for t in trials if t.number < number and t.state in (*finished, *live)}
    if mine in ahead:
        return Verdict.DUPLICATE
    return Verdict.SURPLUS if len(ahead) >= budget else Verdict.RUN


@dataclass(frozen=True)
class Tally:
    """Distinct origins: finished (COMPLETE/PRUNED), live (RUNNING/WAITING, not finished), and waiting trials."""

    finished: int
    live: int
    waiting: int

    def free(self, budget: int) -> int:
        return budget - self.finished - self.live


def tally(trials: Iterable[Any]) -> Tally:
    from optuna.trial import TrialState

    finished_states, live_states = _states()
    trials = list(trials)
    finished = {origin(t) for t in trials if t.state in finished_states}
    live = {origin(t) for t in trials if t.state in live_states} - finished
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return Tally(len(finished), len(live), waiting)


def open_study(storage: Any, identity: StudyIdentity, defaults: Mapping[str, Any], lock: Any) -> Any:
    """Create or load the study (`lock`: `storage.storage_lock(url)`), with the sampler and pruner of its identity.
    The creator records the identity, the space and the sampler's arguments in the study's user attributes and
    enqueues trial 0; a loader re-enqueues it only if no trial carries it (its creator died in between)."""
    import optuna

    sampler = make_sampler(identity.sampler, identity.seed)
    pruner = make_pruner(identity.pruner)
    with lock:
        try:
            study = optuna.create_study(
                storage=storage, study_name=identity.name, sampler=sampler, pruner=pruner, direction="maximize"
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=identity.name, storage=storage, sampler=sampler, pruner=pruner)
        else:
            for key, value in {
                schema.STUDY_IDENTITY: identity.as_dict(),
                schema.STUDY_SPACE: {name: dist.to_toml() for name, dist in identity.space.items()},
                schema.STUDY_SAMPLER: sampler_record(identity.sampler, identity.seed),
            }.items():
                study.set_user_attr(key, value)
        if not any(origin(t) == DEFAULTS_ORIGIN for t in study.get_trials(deepcopy=False)):
            study.enqueue_trial(dict(defaults), user_attrs={ORIGIN: DEFAULTS_ORIGIN})
    return study


def requeue_failed(study: Any, max_retry: int) -> int:
    """Re-queue, with their values, the FAILED trials that ran (not `surplus`/`duplicate`) and that no trial retries
    yet: a worker interrupted (Ctrl-C) or failed by an error, whose cell resumes. At most `max_retry` times per origin.
    Returns how many were queued. Two workers doing this at once queue a duplicate, which `claim` turns away."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    with optuna_experimental():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=True)
    queued = 0
    for trial in trials:
        if trial.state == TrialState.FAIL and VERDICT not in trial.user_attrs and trial.number not in retried:
            before = len(study.get_trials(deepcopy=False))
            with optuna_experimental():
                retry(study, trial)
            queued += len(study.get_trials(deepcopy=False)) - before
    return queued


@dataclass(frozen=True)
class TrialRun:
    """What the integration's `evaluate` gets: the trial's values (all drawn before it runs), its number and origin,
    and `report(epoch, value)` for the pruner (raises `optuna.TrialPruned` when the pruner stops the trial)."""

    trial: Any  # optuna.Trial: set_user_attr (e.g. the MLflow run id) is the integration's to use
    params: dict[str, Any]
    origin: str

    @property
    def number(self) -> int:
        return self.trial.number

    def report(self, epoch: int, value: float) -> None:
        import optuna

        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} at {value:.4g}")


class _RanNothing(Exception):
    """A trial turned away by `claim`: it ends FAILED with its verdict and runs nothing."""


class _Quiet(logging.Filter):
    """Drops Optuna's two warnings (one with a traceback) about a trial `claim` turned away: an expected outcome of
    workers racing for the last trials, recorded on the trial itself (`VERDICT`)."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {n} failed ") for n in self.numbers)


def draw(trial: Any, space: Space, budget: int) -> TrialRun | Verdict:
    """A new trial's verdict (`claim`) and, if it may run, all its values: a `TrialRun`; else the verdict, recorded
    on the trial (`VERDICT`), which its caller ends FAILED having run nothing. Used by `run_trials` in each worker and
    by a driver that asks trials itself (`rkdbench tune`, `tuning.trials`)."""
    trials = trial.study.get_trials(deepcopy=False)
    verdict = claim(trials, trial.number, budget)
    if verdict is not Verdict.RUN:
        trial.set_user_attr(VERDICT, verdict.value)
        return verdict
    # every value is drawn before anything runs, so a retry of this trial has them all and maps to the same cell
    params = {name: space[name].suggest(trial, name) for name in sorted(space)}
    mine = next(t for t in trials if t.number == trial.number)
    return TrialRun(trial, params, origin(mine))


def _objective(trial: Any, space: Space, budget: int, evaluate: Callable[[TrialRun], float], quiet: _Quiet) -> float:
    drawn = draw(trial, space, budget)
    if isinstance(drawn, Verdict):
        quiet.numbers.add(trial.number)
        raise _RanNothing(f"trial {trial.number} runs nothing: {drawn.value} (budget {budget})")
    return float(evaluate(drawn))


def run_trials(
    study: Any,
    space: Space,
    budget: int,
    evaluate: Callable[[TrialRun], float],
    *,
    max_retry: int = 3,
    wait: bool = True,
    poll: float = 5.0,
) -> Tally:
    """Work on `study` until `budget` trials are finished (all workers together); return the final tally.

    `evaluate(run)` trains the trial's cell (or finds it finished) and returns the objective's value. With `wait`,
    a worker that finds every remaining slot held by other workers' running trials waits (`poll` seconds between
    looks) until they finish, or until their heartbeat goes stale and their retries are queued, which it then runs;
    without, it returns at once (a later run continues). Errors of `evaluate` propagate (the trial ends FAILED and is
    re-queued at the next start, at most `max_retry` times)."""
    budget = check_budget("budget", budget)
    requeue_failed(study, max_retry)

    def full(tallied: Tally) -> bool:
        return tallied.waiting == 0 and tallied.free(budget) <= 0

    def stop_when_full(study: Any, _trial: Any) -> None:
        tallied = tally(study.get_trials(deepcopy=False))
        if tallied.finished >= budget or full(tallied):
            study.stop()

    quiet = _Quiet()

    def objective(trial: Any) -> float:
        return _objective(trial, space, budget, evaluate, quiet)

    optuna_log = logging.getLogger("optuna.study._optimize")  # where Optuna reports a failed trial
    optuna_log.addFilter(quiet)
    try:
        while True:
            fail_stale_trials(study)
            tallied = tally(study.get_trials(deepcopy=False))
            if tallied.finished >= budget or (full(tallied) and not wait):
                return tallied
            if full(tallied):
                time.sleep(poll)
                continue
            study.optimize(objective, catch=(_RanNothing,), callbacks=[stop_when_full], gc_after_trial=False)
    finally:
        optuna_log.removeFilter(quiet)


def fail_stale_trials(study: Any) -> None:
    """Optuna's `fail_stale_trials` (which `optimize` also calls before each trial): stale trials are failed and, by
    the storage's callback, re-queued."""
    from optuna.storages import fail_stale_trials

    with optuna_experimental():
        fail_stale_trials(study)


def finished_trials(study: Any, budget: int | None = None) -> list[Any]:
    """The finished (COMPLETE or PRUNED) trials, one per origin (the lowest-numbered), in number order: what the
    budget counts, and the scores of the budget curve (COMPLETE ones); with `budget`, the first `budget` of them (a
    study that a larger budget extended earlier compares equally at a smaller one)."""
    finished_states, _ = _states()
    kept: dict[str, Any] = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if trial.state in finished_states:
            kept.setdefault(origin(trial), trial)
    return list(kept.values())[:budget]


def best_trial(study: Any, budget: int | None = None) -> Any:
    """The selected configuration: the COMPLETE trial with the highest value (among the first `budget` finished);
    ties go to the lower number, so the official recipe (trial 0) wins a tie. ConfigError if no trial has completed."""
    from optuna.trial import TrialState

    complete = [t for t in finished_trials(study, budget) if t.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {study.study_name!r} has no completed trial yet; run `rkdbench tune` first")
    return max(complete, key=lambda t: (t.value, -t.number))
