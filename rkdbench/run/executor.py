"""Executors: where a suite's cells run. An executor is a component like a method: a subclass of `Executor`
registered by a plugin's `register_executors(register)` hook; the built-ins (`serial`, `local`, `ray`, `slurm` in
plugins/executors/) are registered through the same entry-point group a third party uses (hydra's launcher plugins
are the model). An executor declares typed `Options` (a frozen dataclass whose fields, declared with
`executor_option`, become options of `rkdbench run`), `check`s its input before anything runs (one line, exit 2),
says how many cells it runs at once (`parallelism`, for the suite's ETA), and `run`s the cells: it calls `prepare`
once before any cell starts (store and teachers), runs every cell through `run_cell` (or the in-process loop
`run_cells`), which are exactly-once by themselves (the cell's lease and journal), and returns one `CellOutcome` per
cell in the cells' order. `run_suite` hands it the cells longest first by their predicted time, with the predictions
in `options.predicted` for its status line (`suite_status(..., predicted=options.predicted)`), and it should start
them in that order. Options come from the command line, else from the user's settings file (the `[executor.NAME]`
table of `--executor-config FILE`, else `$RKDBENCH_CONFIG`, else `$XDG_CONFIG_HOME/rkdbench/config.toml`, default
`~/.config/rkdbench/config.toml`), else the declared defaults; a list option given on the command line adds to the
file's (`--sbatch constraint=a100` to the lab's usual parameters).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..config import Cell, Suite
from ..config.fields import Rule, check_value
from ..config.files import read_toml
from ..contracts.params import build_params
from ..errors import ConfigError, UserError, close_matches
from ..plugins import get_registry
from ..tracking import Tracker
from .cells import expand_cells
from .options import CellOutcome, RunOptions
from .prepare import prepare
from .progress import say
from .schedule import schedule

__all__ = [
    "Executor",
    "NoOptions",
    "Prepare",
    "executor_option",
    "option_help",
    "settings_path",
    "build_executor",
    "run_suite",
]

Prepare = Callable[[list[Cell], Tracker, RunOptions], None]


@dataclass(frozen=True)
class NoOptions:
    """The options of an executor that has none."""


def executor_option(default: Any, help: str, *, rule: Rule | None = None, metavar: str | None = None) -> Any:
    """One field of an executor's `Options`: its default, the `--help` line of the `rkdbench run` option it becomes,
    and optionally a rule its value must keep (`rkdbench.config.fields.at_least(1)`) and the option's metavar."""
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule, "metavar": metavar})


def option_help(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


class Executor(abc.ABC):
    """Base of executors: set `name`, `description` and `Options`, implement `run`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""  # one line: what `--executor NAME` does, shown in `rkdbench run --help`
    Options: ClassVar[type] = NoOptions

    def __init__(self, **options: Any) -> None:
        owner = f"executor {self.name!r}"
        self.options = build_params(self.Options, options, owner=owner)
        hints = typing.get_type_hints(self.Options)
        for field in dataclasses.fields(self.Options):
            rule = field.metadata.get("rule")
            if rule is not None and field.name in options:
                check_value(
                    f"{owner} option --{field.name.replace('_', '-')}", options[field.name], hints[field.name], rule
                )

    def check(self, cells: list[Cell], options: RunOptions) -> None:  # noqa: B027 (optional, not abstract)
        """Refuse what cannot run before anything starts (a missing program, an unreachable cluster): raise a
        `UserError` of one line. Default: nothing to check."""

    def parallelism(self, cells: list[Cell], options: RunOptions) -> int:
        """How many cells run at once (the suite's ETA divides by it). Default: one."""
        return 1

    @abc.abstractmethod
    def run(self, cells: list[Cell], tracker: Tracker, options: RunOptions, prepare: Prepare) -> list[CellOutcome]:
        """Run the cells; `prepare(cells, tracker, options)` once before any starts; one outcome per cell, in order."""


def settings_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The user's settings file: `explicit` (`--executor-config`), else `$RKDBENCH_CONFIG` (both must exist), else
    `$XDG_CONFIG_HOME/rkdbench/config.toml` (default `~/.config/...`) when it exists; None when there is none."""
    for what, value in (("--executor-config", explicit), ("$RKDBENCH_CONFIG", os.environ.get("RKDBENCH_CONFIG"))):
        if value:
            if not Path(value).is_file():
                raise ConfigError(f"{what} {value}: no such file")
            return Path(value)
    home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    default = Path(home) / "rkdbench" / "config.toml"
    return default if default.is_file() else None


def _settings(name: str, fields: Mapping[str, Any], path: Path | None) -> dict[str, Any]:
    """The `[executor.NAME]` table of the settings file (empty when there is no file or table)."""
    if path is None:
        return {}
    table = read_toml(path).get("executor", {})
    executors = get_registry().names("executor")
    unknown = sorted(set(table) - set(executors))
    if unknown:
        raise ConfigError(
            f"{path}: [executor.{unknown[0]}] names no executor{close_matches(unknown[0], executors)}; "
            f"executors: {', '.join(executors)}"
        )
    values = dict(table.get(name, {}))
    for key in values:
        if key not in fields:
            raise ConfigError(
                f"{path}: [executor.{name}] {key}: no such option{close_matches(key, fields)}; "
                f"allowed: {', '.join(fields) or '(none)'}"
            )
    return values


def build_executor(
    name: str, given: Mapping[str, Any] | None = None, settings: str | os.PathLike[str] | None = None
) -> Executor:
    """The executor `name` with the options given on the command line (option name -> value, for any executor's
    option) over its `[executor.NAME]` settings (`settings_path(settings)`; a list option adds to the file's) over
    its defaults. An option of another executor is one line."""
    component = get_registry().get("executor", name)
    fields = {f.name: f for f in dataclasses.fields(component.obj.Options)}
    given = dict(given or {})
    foreign = [key for key in given if key not in fields]
    if foreign:
        owners = [
            other
            for other in get_registry().names("executor")
            if foreign[0] in {f.name for f in dataclasses.fields(get_registry().get("executor", other).obj.Options)}
        ]
        takes = ", ".join(f"--{f.replace('_', '-')}" for f in fields) or "no options"
        raise UserError(
            f"--{foreign[0].replace('_', '-')} is an option of --executor {' / '.join(owners) or '?'}, not of "
            f"--executor {name} (which takes {takes})"
        )
    values = _settings(name, fields, settings_path(settings))
    for key, value in given.items():
        extend = isinstance(value, tuple) and isinstance(values.get(key), list | tuple)
        values[key] = (*values[key], *value) if extend else value
    try:
        return component.instantiate(**values)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(f"executor {name!r} parameter", f"--executor {name} option")) from None


def run_suite(suite: Suite, options: RunOptions, executor: Executor) -> list[CellOutcome]:
    """Run every cell (validated, checked by the executor, and prepared first); failures are recorded and the suite
    goes on. Any number of processes may run one suite on one store: they share the cells (`run_cell`). The
    executor gets the cells longest first by their predicted time (`rkdbench.run.schedule`; its progress lines
    count in that order) and the predictions in `options.predicted` (the ETA); the outcomes come back in the
    suite's order, as the summary and `--json` list them."""
    index, count = options.shard
    cells = expand_cells(suite)[index::count]
    executor.check(cells, options)
    tracker = Tracker(options.results)
    planned = schedule(cells, tracker, options)
    say(options, f"[dim]{planned.line()}[/]")
    ordered = [cells[i] for i in planned.order]
    outcomes = executor.run(ordered, tracker, dataclasses.replace(options, predicted=planned.predicted), prepare)
    by_index = dict(zip(planned.order, outcomes))
    return [by_index[i] for i in range(len(cells))]
