"""Everything a study needs, checked before anything is created: `plan_study` resolves the options of `rkdbench tune`
against the protocol's `[tune]` defaults and refuses bad input in one line (exit code 2): an unknown sampler or
pruner, a budget missing or below 1, an objective that is a test-split or unknown metric, a dataset without a
validation split, a space that does not contain trial 0. The spaces themselves were checked where they are declared
(the method class, the protocol file). Imports no Optuna: a dry run can plan every study of a suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config.fields import at_least, check_value
from ..config.space import Space
from ..config.tune import Objective, check_objective
from ..errors import ConfigError
from .budget import check_budget
from .objective import check_validation_split
from .samplers import PRUNERS, SAMPLERS, check_name
from .study import StudyIdentity, study_space, trial_zero

__all__ = ["StudyPlan", "plan_study"]


@dataclass(frozen=True)
class StudyPlan:
    """One study to run: its identity (and so its name), space, trial 0, budget and objective."""

    identity: StudyIdentity
    space: Space
    defaults: dict[str, Any]
    budget: int
    objective: Objective

    @property
    def name(self) -> str:
        return self.identity.name


def plan_study(
    protocol: Any,
    method_cls: type,
    method_params: Mapping[str, Any],
    student: str,
    teacher: str,
    dataset: Any,
    *,
    extra_teachers: Mapping[str, str] | None = None,
    budget: int | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    objective: str | None = None,
    pruner: str | None = None,
) -> StudyPlan:
    """The study of `method_cls` (resolved `method_params`: trial 0) with `student` and `teacher` on `protocol`;
    `None` options take the protocol's `[tune]` values. `dataset` is the protocol's dataset plugin instance."""
    tune = protocol.tune
    sampler = check_name("--sampler", sampler if sampler is not None else tune.sampler, SAMPLERS)
    pruner = check_name("--pruner", pruner if pruner is not None else tune.pruner, PRUNERS)
    chosen = check_objective("--objective", objective if objective is not None else tune.objective)
    if budget is None and tune.budget is None:
        raise ConfigError(f"--budget is required: {protocol.source} sets no [tune] budget; allowed: an integer >= 1")
    budget = check_budget("--budget", budget if budget is not None else tune.budget)
    seed = tune.seed if seed is None else check_value("--seed", seed, int, at_least(0))
    check_validation_split(protocol, dataset)
    space = study_space(protocol, method_cls)
    defaults = trial_zero(protocol, method_params, space)
    identity = StudyIdentity(
        protocol_hash=protocol.hash,
        method=method_cls.name,
        method_version=method_cls.version,
        method_params=dict(method_params),
        student=student,
        teacher=teacher,
        extra_teachers=dict(extra_teachers or {}),
        space=space,
        sampler=sampler,
        seed=seed,
        objective=chosen.metric,
        pruner=pruner,
    )
    return StudyPlan(identity, space, defaults, budget, chosen)
