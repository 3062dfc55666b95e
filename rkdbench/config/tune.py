"""The `[tune]` declarations a protocol and a method may make, checked when they load: a search space's entries
against the parameters they range over, with the checkers that already validate every value set by hand
(`config.fields.check_value` for protocol fields: type, `Literal` choices, the field's rule such as `lr` > 0; a
method's own parameters are checked the same way by `contracts.space`); the objective a study maximizes (a validation
metric the engine logs each epoch, never a test-split one); and the names of the samplers and pruners. The name
exists (close matches otherwise), the type fits, both bounds and every choice are allowed values, a log range stays
above 0, and the default (trial 0, the official recipe) lies inside. Every refusal is one `ConfigError` line naming
the declaration, the parameter, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError, close_matches
from ..tracking.schema import DIAGNOSTICS_SPLIT, EVALUATION_SPLITS, VAL_CLEAN_ACC, VAL_PGD_ACC, parse_metric_key
from .fields import Section, check_value, choices_of
from .space import TOML_EXAMPLE, Distribution, Space, parse_distribution

__all__ = [
    "Declaration",
    "section_declarations",
    "check_space",
    "check_contains",
    "parse_space",
    "Objective",
    "OBJECTIVES",
    "DEFAULT_OBJECTIVE",
    "TEST_SPLITS",
    "check_objective",
    "SamplerName",
    "PrunerName",
]


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
    def forms(self) -> str:
        """The TOML forms that fit the parameter's type."""
        ranges = [f for f, k in (("log_uniform/uniform", float), ("int/log_int", int)) if k in self.kinds]
        return ", ".join([*ranges, "choice"])

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


def parse_space(where: str, table: Any, tables: Mapping[str, type[Section]]) -> dict[str, Distribution]:
    """`[tune.space]` of a protocol: `"<table>.<field>" = {form = [...]}` over the fields of `tables`, checked."""
    if not isinstance(table, dict):
        raise ConfigError(f'{where} must be a table of "<table>.<field>" = {TOML_EXAMPLE}')
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


@dataclass(frozen=True)
class Objective:
    """A per-epoch validation metric (`metric`, as the engine logs it), maximized, read at the last epoch."""

    metric: str
    description: str
    direction: str = "maximize"


OBJECTIVES: dict[str, Objective] = {
    VAL_PGD_ACC: Objective(VAL_PGD_ACC, "robust accuracy under the protocol's validation PGD, last epoch"),
    VAL_CLEAN_ACC: Objective(VAL_CLEAN_ACC, "clean validation accuracy, last epoch"),
}


DEFAULT_OBJECTIVE = VAL_PGD_ACC


# metric families measured on the test split: the evaluated selections (run/selections.py) and the diagnostics
TEST_SPLITS = (*EVALUATION_SPLITS, DIAGNOSTICS_SPLIT)


def check_objective(what: str, name: Any) -> Objective:
    """The objective called `name`, or one ConfigError line: a test-split metric, or an unknown one."""
    allowed = ", ".join(f"{n} ({o.description})" for n, o in OBJECTIVES.items())
    if not isinstance(name, str):
        raise ConfigError(f"{what} = {name!r} is not allowed; allowed: {allowed}")
    key = parse_metric_key(name)
    if key is not None and key.split in TEST_SPLITS:
        raise ConfigError(
            f"{what} = {name!r} is measured on the test split, which tuning never reads; allowed: {allowed}"
        )
    if name not in OBJECTIVES:
        raise ConfigError(
            f"{what} = {name!r} is not a known metric{close_matches(name, OBJECTIVES)}; allowed: {allowed}"
        )
    return OBJECTIVES[name]


SamplerName = Literal["qmc", "random", "tpe"]


PrunerName = Literal["none", "asha"]
