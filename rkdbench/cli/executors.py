"""`--executor` and every executor's own options, made from the registry when a command's options are listed, so a
plugin's executor (an entry point, or a `--plugins-dir` file, which the group loads before parsing) gets its choice
and options with no core edit. Each field of an executor's `Options` becomes one option (`workers` -> `--workers`):
its type, default and `--help` line come from the declaration (`rkdbench.run.executor.executor_option`). Only the
options given on the command line (or in the environment) reach the request; the executor's settings file and
defaults fill the rest, and an option of another executor is refused when the executor is built."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import click
from click.core import ParameterSource

from ..config.fields import Bound

__all__ = ["ExecutorCommand", "DEFAULT_EXECUTOR", "given_executor_options"]

DEFAULT_EXECUTOR = "local"
GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _click_type(hint: Any, rule: Any) -> dict[str, Any]:
    """click's `type`/`is_flag`/`multiple` for a declared field type."""
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if typing.get_args(hint) else hint
    if typing.get_origin(hint) is Literal:
        return {"type": click.Choice([str(c) for c in typing.get_args(hint)])}
    if typing.get_origin(base) is tuple:
        return {"multiple": True, "type": typing.get_args(base)[0]}
    if base is bool:
        return {"is_flag": True}
    if base is int and isinstance(rule, Bound) and not rule.strict:
        return {"type": click.IntRange(min=int(rule.bound))}
    return {"type": base}


class _ExecutorChoice(click.Choice):
    """click's choice, with close matches for a typo (`--executor slrum`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value not in self.choices:
            from ..errors import close_matches

            hint = close_matches(str(value), self.choices)
            self.fail(f"{value!r} is not an executor{hint}; executors: {', '.join(self.choices)}", param, ctx)
        return super().convert(value, param, ctx)


def _options() -> list[click.Option]:
    from ..plugins import get_registry

    registry = get_registry()
    names = registry.names("executor")
    choices = "; ".join(f"{name}: {registry.get('executor', name).obj.description}" for name in names)
    params = [
        click.Option(
            ["--executor"],
            type=_ExecutorChoice(names),
            default=DEFAULT_EXECUTOR,
            show_default=True,
            help=f"{choices}. Each executor's options below may also be set in the [executor.NAME] table of "
            "the settings file (--executor-config); the command line wins.",
        ),
        click.Option(
            ["--executor-config"],
            default=None,
            metavar="FILE",
            help="The TOML settings file whose [executor.NAME] tables hold your executors' options (default: "
            "$RKDBENCH_CONFIG, else ~/.config/rkdbench/config.toml when it exists); options given here win.",
        ),
    ]
    seen: set[str] = set()
    for name in names:
        options_class = registry.get("executor", name).obj.Options
        hints = typing.get_type_hints(options_class)
        for field in dataclasses.fields(options_class):
            if field.name in seen:  # two executors share an option: one flag serves both
                continue
            seen.add(field.name)
            help_text = field.metadata.get("help", "")
            if f"--executor {name}" not in help_text:
                help_text = f"With --executor {name}: {help_text}"
            params.append(
                click.Option(
                    [f"--{field.name.replace('_', '-')}"],
                    default=field.default,
                    show_default=field.default not in (None, (), False),
                    metavar=field.metadata.get("metavar"),
                    help=help_text,
                    **_click_type(hints[field.name], field.metadata.get("rule")),
                )
            )
    return params


class ExecutorCommand(click.Command):
    """A command whose options end with `--executor` and the registered executors' options."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        help_option = self.get_help_option(ctx)
        own = [p for p in params if p is not help_option]
        return [*own, *_options(), *([help_option] if help_option is not None else [])]


def given_executor_options(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The executor options among `values` that the user gave (command line or environment), not their defaults."""
    return {name: value for name, value in values.items() if ctx.get_parameter_source(name) in GIVEN}
