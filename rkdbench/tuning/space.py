"""Search spaces declared, not hard-coded: `LogUniform`, `Uniform`, `IntRange` and `Choice` over named parameters.

A method declares its own space next to its `Params` (`space = {"temperature": LogUniform(0.5, 10)}`), a protocol a
space shared by every method in `[tune.space]` (`"train.lr" = {log_uniform = [0.01, 0.5]}`). Each distribution is
checked against the declaration of the parameter it ranges over, with the checkers that already validate every value
(`config.fields.check_value` for protocol fields, `contracts.build_params` for method parameters): the name exists
(close matches otherwise), the type fits (a float range over a float, an int range over an int, choices over anything
with a fixed set of values), both bounds and every choice are allowed values, a log range stays above 0, and the
default (trial 0, the official recipe) lies inside. Every refusal is one `ConfigError` line naming the declaration,
the parameter, the value and what is allowed. `to_optuna()` gives Optuna's distribution (imported only then).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..config.fields import Section, check_value, choices_of
from ..config.files import canonical_hash
from ..errors import ConfigError, close_matches

__all__ = [
    "Distribution",
    "LogUniform",
    "Uniform",
    "IntRange",
    "Choice",
    "Space",
    "Declaration",
    "parse_distribution",
    "parse_space",
    "check_space",
    "check_contains",
    "section_declarations",
    "method_declarations",
    "check_method_space",
    "space_hash",
    "describe_space",
    "TOML_FORMS",
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

    def check(self, what: str, declaration: Declaration) -> None:
        """ConfigError unless every value this distribution can give is an allowed value of `declaration`."""
        self._check_shape(what)
        if self.value_type is not None:
            if declaration.choices:
                allowed = ", ".join(repr(c) for c in declaration.choices)
                raise ConfigError(f"{what} = {self}: the parameter has fixed choices; allowed: choice = [{allowed}]")
            if self.value_type not in declaration.kinds:
                raise ConfigError(
                    f"{what} = {self}: {_NOUNS[self.value_type]} range over a parameter of type "
                    f"{declaration.type_name}; allowed: {_allowed_forms(declaration)}"
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
_EXAMPLE = "{log_uniform = [0.01, 0.5]}"


def parse_distribution(what: str, raw: Any) -> Distribution:
    """A distribution from its TOML form, e.g. `{log_uniform = [0.01, 0.5]}`; ConfigError on anything else."""
    forms = ", ".join(TOML_FORMS)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{what} = {raw!r} is not allowed; allowed: a table with one of {forms}, e.g. {_EXAMPLE}")
    [(key, args)] = raw.items()
    if key not in TOML_FORMS:
        raise ConfigError(f"{what}: unknown distribution {key!r}{close_matches(key, TOML_FORMS)}; allowed: {forms}")
    ranged = key != "choice"
    if not isinstance(args, list) or (ranged and len(args) != 2):
        raise ConfigError(f"{what} = {raw!r}: {key} takes {'[low, high]' if ranged else 'a list of values'}")
    return TOML_FORMS[key](args)


@dataclass(frozen=True)
class Declaration:
    """What a tunable parameter allows: its annotation, its default, and the one function that validates a value
    (the same checker that validates it when set by hand)."""

    hint: Any
    default: Any
    validate: Callable[[str, Any], Any]  # (what, value) -> the value, or a ConfigError naming `what`

    @property
    def choices(self) -> tuple[Any, ...]:
        return choices_of(self.hint)

    @property
    def kinds(self) -> set[type]:
        """The Python types the annotation accepts (an `int` literal is an int, `float | None` is float and None)."""
        return _kinds(self.hint)

    @property
    def type_name(self) -> str:
        return " | ".join(sorted(k.__name__ for k in self.kinds)) or str(self.hint)


def _kinds(hint: Any) -> set[type]:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return {type(c) for c in typing.get_args(hint)}
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(a) for a in typing.get_args(hint)))
    return {origin or hint} if isinstance(origin or hint, type) else set()


def _allowed_forms(declaration: Declaration) -> str:
    kinds = declaration.kinds
    forms = [f for f, k in (("log_uniform/uniform", float), ("int/log_int", int)) if k in kinds]
    return ", ".join([*forms, "choice"])


def section_declarations(section: type[Section]) -> dict[str, Declaration]:
    """The declarations of a protocol table's fields: validated by `check_value` with the field's rule."""
    hints = typing.get_type_hints(section)
    declared: dict[str, Declaration] = {}
    for name, f in section.fields().items():
        rule = f.metadata.get("rule")
        default = f.default if f.default is not dataclasses.MISSING else None
        declared[name] = Declaration(
            hints[name], default, lambda what, value, h=hints[name], r=rule: check_value(what, value, h, r)
        )
    return declared


def method_declarations(method_cls: type) -> dict[str, Declaration]:
    """The declarations of a method's `Params` fields, validated by `contracts.build_params` (name, type, `Literal`
    choices, the dataclass's own checks) plus a field's `rule` where it declares one (`optional(1.0, above(0))`)."""
    from ..contracts import build_params

    params_cls = method_cls.Params
    if not dataclasses.is_dataclass(params_cls):
        return {}
    hints = typing.get_type_hints(params_cls)
    owner = f"method {method_cls.name!r}"

    def validator(name: str, rule: Any) -> Callable[[str, Any], Any]:
        def validate(what: str, value: Any) -> Any:
            try:
                built = getattr(build_params(params_cls, {name: value}, owner=owner), name)
            except ConfigError as exc:
                raise ConfigError(f"{what}: {exc}") from None
            return built if rule is None else check_value(what, built, hints[name], rule)

        return validate

    declared: dict[str, Declaration] = {}
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        declared[f.name] = Declaration(hints[f.name], default, validator(f.name, f.metadata.get("rule")))
    return declared


def check_space(where: str, space: Mapping[str, Any], declarations: Mapping[str, Declaration]) -> None:
    """ConfigError unless every entry names a declared parameter and fits its declaration."""
    for name, dist in space.items():
        if name not in declarations:
            allowed = ", ".join(declarations) or "(none)"
            raise ConfigError(f"{where}: no parameter {name!r}{close_matches(name, declarations)}; allowed: {allowed}")
        if not isinstance(dist, Distribution):
            raise ConfigError(
                f"{where}: {name} = {dist!r} is not a distribution; allowed: LogUniform, Uniform, IntRange, Choice"
            )
        dist.check(f"{where}: {name}", declarations[name])


def check_contains(where: str, space: Space, values: Mapping[str, Any], what: str = "the default") -> None:
    """ConfigError unless each value (trial 0: the official recipe) lies inside its distribution."""
    for name, dist in space.items():
        if not dist.contains(values.get(name)):
            raise ConfigError(
                f"{where}: {name} = {dist} does not contain {what} {values.get(name)!r}: trial 0 (the official recipe) "
                "must lie inside the space; widen the range"
            )


def check_method_space(method_cls: type) -> None:
    """A method class's `space`: every entry a declared parameter of its `Params`, fitting it, containing its default
    (called when the class is defined, so a bad space is reported as the plugin's error)."""
    where = f"{method_cls.__module__}.{method_cls.__qualname__}.space (method {method_cls.name!r})"
    declarations = method_declarations(method_cls)
    check_space(where, method_cls.space, declarations)
    check_contains(where, method_cls.space, {name: declarations[name].default for name in method_cls.space})


def parse_space(where: str, table: Any, tables: Mapping[str, type[Section]]) -> dict[str, Distribution]:
    """`[tune.space]` of a protocol: `"<table>.<field>" = {form = [...]}` over the fields of `tables`, checked."""
    if not isinstance(table, dict):
        raise ConfigError(f'{where} must be a table of "<table>.<field>" = {_EXAMPLE}')
    space: dict[str, Distribution] = {}
    declarations = {
        f"{prefix}.{name}": declaration
        for prefix, section in tables.items()
        for name, declaration in section_declarations(section).items()
    }
    for name, raw in table.items():
        if name not in declarations:
            raise ConfigError(
                f"{where}: no tunable field {name!r}{close_matches(name, declarations)}; allowed: fields of "
                f'{", ".join(f"[{t}]" for t in tables)} written "<table>.<field>", e.g. "train.lr"'
            )
        space[name] = parse_distribution(f"{where} {name}", raw)
    check_space(where, space, declarations)
    return space


def space_hash(space: Space) -> str:
    """The identity of a space (part of a study's name): its canonical TOML form, hashed."""
    return canonical_hash({name: dist.to_toml() for name, dist in space.items()})


def describe_space(space: Space) -> list[tuple[str, str]]:
    """(parameter, distribution as written in TOML) rows, for docs and dry runs."""
    return [(name, str(dist)) for name, dist in space.items()]
