"""A method's search space (`Method.space`) checked against its own `Params` with the checker that validates every
method parameter set by hand (`contracts.params.build_params`: name, type, `Literal` choices) plus a field's `rule`
where it declares one (`optional(1.0, above(0))`); the official default must lie inside the space (trial 0). Called
when a method class is defined, so a bad space is reported as its plugin's error.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from ..config.fields import check_value
from ..config.tune import Declaration, check_contains, check_space
from ..errors import ConfigError
from .params import build_params

__all__ = ["method_declarations", "check_method_space"]


def method_declarations(method_cls: type) -> dict[str, Declaration]:
    """The declarations of a method's `Params` fields, validated by `contracts.build_params` (name, type, `Literal`
    choices, the dataclass's own checks) plus a field's `rule` where it declares one (`optional(1.0, above(0))`)."""
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


def check_method_space(method_cls: type) -> None:
    """A method class's `space`: every entry a declared parameter of its `Params`, fitting it, containing its default
    (called when the class is defined, so a bad space is reported as the plugin's error)."""
    where = f"{method_cls.__module__}.{method_cls.__qualname__}.space (method {method_cls.name!r})"
    declarations = method_declarations(method_cls)
    check_space(where, method_cls.space, declarations)
    check_contains(where, method_cls.space, {name: declarations[name].default for name in method_cls.space})
