"""Config fields declared once: a `Section` is a frozen dataclass whose every field is one line holding its type, its
default (or `required()`), its allowed values and its one-line description; `Section.parse` turns a TOML table into
the typed instance, and `rkdbench.config.field_docs` the declarations into the docs' field table.

The annotation is the type and, for a fixed set of choices, the allowed values (`Literal["sgd", "adam"]`); a bound
(`at_least(1)`) or a custom `Check` narrows it further. A field with a default is optional: absent from the file means
the default, and nothing is added to the table (so adding an optional field changes no protocol hash). Values are
converted once here (an int where a float is declared becomes a float, a TOML list a tuple, and a field's `convert`
builds a typed value such as the attack entries from its checked table), so readers never re-cast.
Every refusal is one `ConfigError` naming the file, the field, the value and what is allowed, with close matches.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

from ..errors import ConfigError, close_matches

__all__ = [
    "Section",
    "Bound",
    "Check",
    "Rule",
    "at_least",
    "above",
    "required",
    "optional",
    "choices_of",
    "base_type",
    "type_noun",
    "check_value",
]


@dataclass(frozen=True)
class Bound:
    """`value >= bound` (or `> bound` when strict), described after the type's noun: "an integer >= 1"."""

    bound: float
    strict: bool = False
    note: str = ""

    def __call__(self, value: Any) -> bool:
        return value > self.bound if self.strict else value >= self.bound

    def describe(self, noun: str) -> str:
        return f"{noun} {'>' if self.strict else '>='} {self.bound:g}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Check:
    """Any other rule, with the words that say what it allows."""

    test: Callable[[Any], bool]
    words: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)

    def describe(self, noun: str) -> str:
        return self.words


Rule = Bound | Check


def at_least(bound: float, note: str = "") -> Bound:
    return Bound(bound, note=note)


def above(bound: float, note: str = "") -> Bound:
    return Bound(bound, strict=True, note=note)


Convert = Callable[[str, Any], Any]  # (where, the checked value) -> the typed value, or a ConfigError


def required(rule: Rule | None = None, convert: Convert | None = None, *, description: str = "") -> Any:
    """A field the table must give; `convert` builds its typed value (e.g. `AttackEntry`s from tables);
    `description` is its one line in the docs (`rkdbench.config.field_docs`)."""
    return dataclasses.field(metadata={"rule": rule, "convert": convert, "description": description})


def optional(default: Any, rule: Rule | None = None, *, description: str = "") -> Any:
    """A field that may be absent: then `default` applies and the table (and its hash) stays as written."""
    return dataclasses.field(default=default, metadata={"rule": rule, "description": description})


def choices_of(kind: Any) -> tuple[Any, ...]:
    """The allowed values of a `Literal[...]` type (also inside `X | None`), else ()."""
    if typing.get_origin(kind) is Literal:
        return typing.get_args(kind)
    if _is_union(kind):
        return tuple(c for arg in typing.get_args(kind) for c in choices_of(arg))
    return ()


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (Union, types.UnionType)


_NOUNS = {int: "an integer", float: "a number", str: "a string", bool: "bool"}


def base_type(kind: Any) -> Any:
    """`X` of an optional `X | None`, else `kind`."""
    return next((a for a in typing.get_args(kind) if a is not type(None)), kind) if _is_union(kind) else kind


def type_noun(kind: Any) -> str:
    """What a value of `kind` is, in words: "an integer", "a list of names"."""
    if typing.get_origin(kind) in (tuple, list):
        return "a list of " + {int: "integers", str: "names"}.get(typing.get_args(kind)[0], "values")
    return _NOUNS.get(kind, getattr(kind, "__name__", str(kind)))


def _convert(value: Any, kind: Any) -> tuple[bool, Any]:
    """(matches, the value as the declared type): an int is a float where a float is declared, a list a tuple."""
    if _is_union(kind):
        for arg in typing.get_args(kind):
            if arg is not type(None):
                ok, converted = _convert(value, arg)
                if ok:
                    return True, converted
        return False, value
    if typing.get_origin(kind) is Literal:
        return value in typing.get_args(kind) and not isinstance(value, bool), value
    if kind is Any:
        return True, value
    if isinstance(value, bool) and kind is not bool:
        return False, value
    if kind is float:
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    origin = typing.get_origin(kind)
    if origin in (tuple, list):
        item = typing.get_args(kind)[0]
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_convert(v, item) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict:
        return isinstance(value, dict), value
    return isinstance(value, kind), value


def check_value(what: str, value: Any, kind: Any, rule: Rule | None = None) -> Any:
    """`value` as `kind` (see `_convert`), or a ConfigError: `what = value is not allowed; allowed: ...`."""
    ok, converted = _convert(value, kind)
    if ok and rule is not None:
        items = converted if isinstance(rule, Bound) and isinstance(converted, tuple) else (converted,)
        ok = all(rule(v) for v in items)
    if ok:
        return converted
    options = [c for c in choices_of(kind) if isinstance(c, str)]
    if options:
        allowed = ", ".join(options)
        hint = close_matches(value, options) if isinstance(value, str) else ""
        raise ConfigError(f"{what} = {value!r} is not allowed; allowed: {allowed}{hint}")
    base = base_type(kind)
    allowed = rule.describe(type_noun(base)) if rule is not None else type_noun(base)
    raise ConfigError(f"{what} = {value!r} is not allowed; allowed: {allowed}")


class Section:
    """Base of the typed sections; subclasses are `@dataclass(frozen=True, kw_only=True)` with one line per field."""

    table: ClassVar[str] = ""  # the TOML table, e.g. "train"

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def required_fields(cls) -> list[str]:
        return [
            name
            for name, f in cls.fields().items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]

    @classmethod
    def parse(cls, where: str, values: Any, require: bool = True) -> Any:
        """The typed section of the TOML table `values`, checked field by field (None if a required field is missing
        and `require` is False)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{cls.table}] must be a table")
        fields, hints = cls.fields(), typing.get_type_hints(cls)
        typed: dict[str, Any] = {}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(
                    f"{where}: unknown field {cls.table}.{key}{close_matches(key, fields)}; "
                    f"allowed in [{cls.table}]: {', '.join(fields)}"
                )
            typed[key] = check_value(f"{where}: {cls.table}.{key}", value, hints[key], fields[key].metadata.get("rule"))
            convert = fields[key].metadata.get("convert")
            if convert is not None:
                typed[key] = convert(where, typed[key])
        missing = [k for k in cls.required_fields() if k not in values]
        if missing and require:
            raise ConfigError(f"{where}: missing field(s) {', '.join(f'{cls.table}.{k}' for k in missing)}")
        return None if missing else cls(**typed)
