"""Seeded samplers and the optional pruner, by name, with the arguments that reproduce them.

`qmc` (the default) is Optuna's `QMCSampler` over a Sobol sequence scrambled with the study's seed: the same points for
every method and every run, which makes budgets comparable. Scrambled, because the plain sequence's first points are the
corner and the exact centre of the space, and spaces are centred on the official values: its trial 1 would repeat trial
0 (the official recipe) in every shared dimension. Trial k draws point k: Optuna's own counter is read and written
without a lock, so two workers asking at once would get the same point, whereas a trial's number is unique. `random` is
`RandomSampler(seed)`; `tpe` is `TPESampler(seed=...)` with Optuna 5's defaults (multivariate, constant liar).
`sampler_record` is what a study stores in its user attributes, because the same name may not sample alike across Optuna
versions. Pruning: `none`, or `asha` (Optuna's asynchronous `SuccessiveHalvingPruner`, fit for many workers). Optuna is
imported only when a factory is called.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, close_matches

__all__ = [
    "Sampler",
    "SAMPLERS",
    "PRUNERS",
    "make_sampler",
    "make_pruner",
    "sampler_record",
    "optuna_experimental",
    "check_name",
]


@dataclass(frozen=True)
class Sampler:
    """A sampler by name: its class (imported when asked for), its arguments for a seed (recorded with the study), and
    whether its draws adapt to the values of finished trials (TPE's do; QMC's and random's do not, so a driver may ask
    for every remaining trial at once: `tuning.trials`)."""

    cls: Callable[[], type]
    arguments: Callable[[int], dict[str, Any]]
    adaptive: bool = False


def _optuna(name: str) -> Callable[[], type]:
    return lambda: getattr(importlib.import_module("optuna.samplers"), name)


@functools.cache
def _numbered_qmc() -> type:
    """`QMCSampler` whose sample id is the trial's number (see the module's docstring); built on first use."""
    from optuna.samplers import QMCSampler

    class NumberedQMCSampler(QMCSampler):
        _current = threading.local()

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            self._current.number = trial.number
            return super().sample_relative(study, trial, search_space)

        def _find_sample_id(self, study: Any, search_space: dict[str, Any]) -> int:
            return self._current.number

    return NumberedQMCSampler


SAMPLERS: dict[str, Sampler] = {
    # QMC's independent sampler (RandomSampler(seed)) draws only a trial asked before any other holds values
    "qmc": Sampler(
        _numbered_qmc,
        lambda seed: {"qmc_type": "sobol", "scramble": True, "seed": seed, "warn_independent_sampling": False},
    ),
    "random": Sampler(_optuna("RandomSampler"), lambda seed: {"seed": seed}),
    "tpe": Sampler(_optuna("TPESampler"), lambda seed: {"seed": seed}, adaptive=True),
}
PRUNERS: dict[str, dict[str, Any]] = {
    "none": {"class": "NopPruner"},
    "asha": {"class": "SuccessiveHalvingPruner"},  # Optuna's defaults: min_resource "auto", reduction factor 4
}


@contextlib.contextmanager
def optuna_experimental() -> Iterator[None]:
    """Use Optuna's experimental parts (QMCSampler, the heartbeat and its retry) without their warning each time:
    they are chosen on purpose and pinned by `optuna>=5,<6`."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def check_name(what: str, name: Any, table: dict[str, Any]) -> str:
    """`name` if it is a key of `table` (SAMPLERS, PRUNERS), else one ConfigError line with the allowed names."""
    if not isinstance(name, str) or name not in table:
        hint = close_matches(name, table) if isinstance(name, str) else ""
        raise ConfigError(f"{what} = {name!r} is not allowed; allowed: {', '.join(table)}{hint}")
    return name


def sampler_record(name: str, seed: int) -> dict[str, Any]:
    """The sampler's class and arguments as stored with the study (and part of nothing else)."""
    check_name("sampler", name, SAMPLERS)
    import optuna

    sampler = SAMPLERS[name]
    return {"class": sampler.cls().__name__, **sampler.arguments(seed), "optuna": optuna.__version__}


def make_sampler(name: str, seed: int) -> Any:
    """A fresh, seeded Optuna sampler (each worker makes its own: samplers hold per-process state)."""
    check_name("sampler", name, SAMPLERS)
    sampler = SAMPLERS[name]
    with optuna_experimental():
        return sampler.cls()(**sampler.arguments(seed))


def make_pruner(name: str) -> Any:
    check_name("pruner", name, PRUNERS)
    import optuna

    return getattr(optuna.pruners, PRUNERS[name]["class"])()
