"""Typed parameters, checked once: a method's (or an attack's) `Params` is a frozen dataclass whose defaults are the
official code's, and `build_params` builds it from overrides, refusing unknown names (with close matches), wrong
types and, for a `Literal` annotation (or a tuple of them), values outside its choices: the one checker of every
method parameter and attack option, run when a suite loads.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from ..config.fields import check_value, choices_of
from ..errors import ConfigError, close_matches

__all__ = ["Params", "build_params", "check_param"]


@dataclass(frozen=True)
class Params:
    """Base for method hyperparameters; subclasses are frozen dataclasses whose defaults match the official code."""


def build_params(params_cls: type, overrides: dict[str, Any], owner: str, also_allowed: tuple[str, ...] = ()) -> Any:
    """Instantiate a params dataclass with overrides, rejecting unknown fields with close matches and bad types."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)} if dataclasses.is_dataclass(params_cls) else {}
    hints = typing.get_type_hints(params_cls) if fields else {}
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            names = sorted([*fields, *also_allowed])
            allowed = ", ".join(names) or "(none)"
            raise ConfigError(
                f"{owner} has no parameter {key!r} (given {value!r}){close_matches(key, names)}; allowed: {allowed}"
            )
        values[key] = check_param(value, fields[key].default, hints[key], f"{owner} parameter {key!r}")
    return params_cls(**values)


def check_param(value: Any, default: Any, hint: Any, what: str) -> Any:
    """`value` coerced to the default's type and, for a `Literal` annotation (or a tuple of them), one of its
    choices: the one check of every method parameter and attack option with a fixed set of values."""
    value = _coerce(value, default, what)
    items = typing.get_args(hint)[:1] if typing.get_origin(hint) is tuple else ()
    if isinstance(value, tuple) and items and choices_of(items[0]):  # tuple[Literal[...], ...]: each item
        return tuple(check_value(what, item, items[0]) for item in value)
    return check_value(what, value, hint) if choices_of(hint) else value


def _coerce(value: Any, default: Any, what: str) -> Any:
    if default is dataclasses.MISSING or default is None or isinstance(value, type(default)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    raise ConfigError(f"{what} must be {type(default).__name__}, got {value!r}")
