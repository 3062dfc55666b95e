"""Seeded samplers and the optional pruner, by name, with the arguments that reproduce them.

`qmc` (the default) is Optuna's `QMCSampler` over an unscrambled Sobol sequence: the same points for every method and
every run, which makes budgets comparable (unscrambled, its first point is the low corner of the space); `random` is
`RandomSampler(seed)`; `tpe` is `TPESampler(seed=...)` with Optuna 5's defaults (multivariate, constant liar).
`sampler_record` is what a study stores in its user attributes, because the same name may not sample alike across
Optuna versions. Pruning: `none`, or `asha` (Optuna's asynchronous `SuccessiveHalvingPruner`, fit for many workers).
Optuna is imported only when a factory is called.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ..errors import ConfigError, close_matches

__all__ = [
    "SamplerName",
    "PrunerName",
    "SAMPLERS",
    "PRUNERS",
    "make_sampler",
    "make_pruner",
    "sampler_record",
    "optuna_experimental",
    "check_name",
]

SamplerName = Literal["qmc", "random", "tpe"]
PrunerName = Literal["none", "asha"]

# name -> seed -> the class in `optuna.samplers` and its arguments (what the study records). QMC's independent
# sampler defaults to RandomSampler(seed); it only draws a trial asked before any other trial holds values.
SAMPLERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "qmc": lambda seed: {
        "class": "QMCSampler",
        "qmc_type": "sobol",
        "scramble": False,
        "seed": seed,
        "warn_independent_sampling": False,
    },
    "random": lambda seed: {"class": "RandomSampler", "seed": seed},
    "tpe": lambda seed: {"class": "TPESampler", "seed": seed},
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

    return {**SAMPLERS[name](seed), "optuna": optuna.__version__}


def make_sampler(name: str, seed: int) -> Any:
    """A fresh, seeded Optuna sampler (each worker makes its own: samplers hold per-process state)."""
    check_name("sampler", name, SAMPLERS)
    import optuna

    arguments = SAMPLERS[name](seed)
    with optuna_experimental():
        return getattr(optuna.samplers, arguments.pop("class"))(**arguments)


def make_pruner(name: str) -> Any:
    check_name("pruner", name, PRUNERS)
    import optuna

    return getattr(optuna.pruners, PRUNERS[name]["class"])()
