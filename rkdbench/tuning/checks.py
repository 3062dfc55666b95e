"""Checking a search space against the parameters it ranges over, with the checkers that already validate every
value set by hand: `config.fields.check_value` for protocol fields (type, `Literal` choices, the field's rule such as
`lr` > 0) and `contracts.build_params` for method parameters (name, type, `Literal` choices, the `Params` class's own
checks). The name exists (close matches otherwise), the type fits (a float range over a float, an int range over an
int, `choice` over anything with a fixed set of values), both bounds and every choice are allowed values, a log range
stays above 0, and the default (trial 0, the official recipe) lies inside. Every refusal is one `ConfigError` line
naming the declaration, the parameter, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..config.fields import Section, check_value, choices_of
from ..errors import ConfigError, close_matches
from .space import TOML_EXAMPLE, Distribution, Space, parse_distribution

__all__ = [
    "Declaration",
    "section_declarations",
    "method_declarations",
    "check_space",
    "check_contains",
    "check_method_space",
    "parse_space",
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
