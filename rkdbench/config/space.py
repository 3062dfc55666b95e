"""Search spaces declared, not hard-coded: `LogUniform`, `Uniform`, `IntRange` and `Choice` over named parameters.

A method declares its own space next to its `Params` (`space = {"temperature": LogUniform(0.5, 10)}`), a protocol a
space shared by every method in `[tune.space]` (`"train.lr" = {log_uniform = [0.01, 0.5]}`, the forms of
`TOML_FORMS`). A distribution knows its TOML form, whether it contains a value, Optuna's distribution (`to_optuna`,
Optuna imported only then), how to draw from an Optuna trial (`suggest`), and what it must be checked for against the
declaration of the parameter it ranges over (`check`; the declarations and the checks of whole spaces are in
`checks.py`). `space_hash` is a space's identity, part of its study's name.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config.files import canonical_hash
from ..errors import ConfigError, close_matches

__all__ = [
    "Distribution",
    "LogUniform",
    "Uniform",
    "IntRange",
    "Choice",
    "Space",
    "TOML_FORMS",
    "TOML_EXAMPLE",
    "parse_distribution",
    "space_hash",
    "describe_space",
]

Value = bool | int | float | str | None  # what Optuna's categorical distribution can hold


class Distribution(ABC):
    """One parameter's range: its TOML form, a membership test, Optuna's distribution and its check."""

    value_type: ClassVar[type | None] = None  # float/int for ranges; None: choices of any allowed type

    @property
    @abstractmethod
    def key(self) -> str:
        """Its name in TOML: `log_uniform`, `uniform`, `int`, `log_int`, `choice`."""

    @abstractmethod
    def args(self) -> list[Any]: ...

    @abstractmethod
    def contains(self, value: Any) -> bool: ...

    @abstractmethod
    def to_optuna(self) -> Any:
        """The `optuna.distributions` object (Optuna is imported here, not before)."""

    @abstractmethod
    def suggest(self, trial: Any, name: str) -> Any:
        """The value of parameter `name` in an Optuna trial (drawn, or fixed for an enqueued or retried trial)."""

    @abstractmethod
    def _checked_values(self) -> list[tuple[str, Any]]:
        """(role, value) pairs that must be allowed values of the parameter: the bounds, or every choice."""

    def to_toml(self) -> dict[str, list[Any]]:
        return {self.key: self.args()}

    def __str__(self) -> str:
        return f"{self.key} [{', '.join(_literal(a) for a in self.args())}]"

    def check(self, what: str, declaration: Any) -> None:
        """ConfigError unless every value this distribution can give is an allowed value of `declaration` (a
        `checks.Declaration`)."""
        self._check_shape(what)
        if self.value_type is not None:
            if declaration.choices:
                allowed = ", ".join(repr(c) for c in declaration.choices)
                raise ConfigError(f"{what} = {self}: the parameter has fixed choices; allowed: choice = [{allowed}]")
            if self.value_type not in declaration.kinds:
                raise ConfigError(
                    f"{what} = {self}: {_NOUNS[self.value_type]} range over a parameter of type "
                    f"{declaration.type_name}; allowed: {declaration.forms}"
                )
        for role, value in self._checked_values():
            declaration.validate(f"{what} = {self}: {role}", value)

    @abstractmethod
    def _check_shape(self, what: str) -> None:
        """Refusals that need no declaration (bounds in order, a log range above 0)."""


_NOUNS = {float: "a float", int: "an integer"}


def _literal(value: Any) -> str:
    """A value as TOML writes it (`"mean"`, `true`, `0.0005`), for messages and docs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class _Range(Distribution):
    low: float
    high: float
    log: bool = False

    def args(self) -> list[Any]:
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (self.value_type is float or isinstance(value, int))
            and self.low <= value <= self.high
        )

    def _checked_values(self) -> list[tuple[str, Any]]:
        return [("low", self.low), ("high", self.high)]

    def _check_shape(self, what: str) -> None:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.low, self.high))
        if not numbers or (self.value_type is int and not all(isinstance(v, int) for v in (self.low, self.high))):
            raise ConfigError(f"{what} = {self.to_toml()}: takes [low, high], two {self.value_type.__name__}s")
        if not all(math.isfinite(v) for v in (self.low, self.high)) or not self.low < self.high:
            raise ConfigError(f"{what} = {self}: low must be below high (both finite)")
        if self.log and self.low <= 0:
            raise ConfigError(
                f"{what} = {self}: a log range must lie above 0 (low {self.low:g}); allowed: low > 0, "
                "or a uniform range to include 0"
            )


@dataclass(frozen=True, init=False)
class LogUniform(_Range):
    """A float drawn uniformly in log space between `low` > 0 and `high` (learning rates, weight decay, weights)."""

    value_type = float

    def __init__(self, low: float, high: float) -> None:
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", True)

    @property
    def key(self) -> str:
        return "log_uniform"

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=True)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, float(self.low), float(self.high), log=True)


@dataclass(frozen=True, init=False)
class Uniform(_Range):
    """A float drawn uniformly between `low` and `high` (mixing weights in [0, 1])."""

    value_type = float

    def __init__(self, low: float, high: float) -> None:
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", False)

    @property
    def key(self) -> str:
        return "uniform"

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high))

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, float(self.low), float(self.high))


@dataclass(frozen=True)
class IntRange(_Range):
    """An integer between `low` and `high` inclusive, uniform or (`log=True`) log-uniform."""

    low: int  # type: ignore[assignment]
    high: int  # type: ignore[assignment]
    value_type = int

    @property
    def key(self) -> str:
        return "log_int" if self.log else "int"

    def to_optuna(self) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@dataclass(frozen=True, init=False)
class Choice(Distribution):
    """One of a fixed list of values (`Choice("mean", "batchmean")`); each must be an allowed value."""

    values: tuple[Value, ...]

    def __init__(self, *values: Value) -> None:
        object.__setattr__(self, "values", tuple(values))

    @property
    def key(self) -> str:
        return "choice"

    def args(self) -> list[Any]:
        return list(self.values)

    def contains(self, value: Any) -> bool:
        # 1 and 1.0 are the same number, but True is not 1 (nor "1" one)
        return any(isinstance(value, bool) == isinstance(v, bool) and value == v for v in self.values)

    def to_optuna(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.values)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.values)

    def _checked_values(self) -> list[tuple[str, Any]]:
        return [("choice", v) for v in self.values]

    def _check_shape(self, what: str) -> None:
        if not self.values:
            raise ConfigError(f"{what} = {self}: needs at least one value")
        odd = [v for v in self.values if v is not None and not isinstance(v, (bool, int, float, str))]
        if odd:
            raise ConfigError(f"{what} = {self}: {odd[0]!r} cannot be a choice; allowed: strings, numbers, booleans")
        if len({(type(v), v) for v in self.values}) != len(self.values):
            raise ConfigError(f"{what} = {self}: a value is listed twice")


Space = Mapping[str, Distribution]

# TOML form -> constructor from the list it holds: `{log_uniform = [0.01, 0.5]}`, `{choice = ["mean", "batchmean"]}`
TOML_FORMS: dict[str, Callable[[list[Any]], Distribution]] = {
    "log_uniform": lambda a: LogUniform(*a),
    "uniform": lambda a: Uniform(*a),
    "int": lambda a: IntRange(*a),
    "log_int": lambda a: IntRange(*a, log=True),
    "choice": lambda a: Choice(*a),
}
TOML_EXAMPLE = "{log_uniform = [0.01, 0.5]}"


def parse_distribution(what: str, raw: Any) -> Distribution:
    """A distribution from its TOML form, e.g. `{log_uniform = [0.01, 0.5]}`; ConfigError on anything else."""
    forms = ", ".join(TOML_FORMS)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{what} = {raw!r} is not allowed; allowed: a table with one of {forms}, e.g. {TOML_EXAMPLE}")
    [(key, args)] = raw.items()
    if key not in TOML_FORMS:
        raise ConfigError(f"{what}: unknown distribution {key!r}{close_matches(key, TOML_FORMS)}; allowed: {forms}")
    ranged = key != "choice"
    if not isinstance(args, list) or (ranged and len(args) != 2):
        raise ConfigError(f"{what} = {raw!r}: {key} takes {'[low, high]' if ranged else 'a list of values'}")
    return TOML_FORMS[key](args)


def space_hash(space: Space) -> str:
    """The identity of a space (part of a study's name): its canonical TOML form, hashed."""
    return canonical_hash({name: dist.to_toml() for name, dist in space.items()})


def describe_space(space: Space) -> list[tuple[str, str]]:
    """(parameter, distribution as written in TOML) rows, for docs and dry runs."""
    return [(name, str(dist)) for name, dist in space.items()]
