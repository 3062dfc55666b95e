"""An executor's user settings: the `[executor.<name>]` table of the user's config file, under the command line.

An executor's options are a `config.fields.Section` (each field one line: type, default, rule, and its help in
`metadata["help"]`), so a table is checked exactly as a protocol's: one `ConfigError` naming the file, the field
and what is allowed. The file is `--executor-config FILE`, else `$RKDBENCH_CONFIG`, else
`$XDG_CONFIG_HOME/rkdbench/config.toml` (`~/.config/rkdbench/config.toml`) when it exists; a lab keeps its
partition, account and time limit there once. Options given on the command line win over the file; list options
(such as Slurm's extra `sbatch` parameters) add to the file's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ...config.fields import Section
from ...config.files import read_toml
from ...errors import ConfigError

__all__ = ["CONFIG_ENV", "config_path", "executor_options"]

CONFIG_ENV = "RKDBENCH_CONFIG"
S = TypeVar("S", bound=Section)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The user config file: `explicit`, `$RKDBENCH_CONFIG` (both must exist), else the XDG one if present."""
    for given, what in ((explicit, "--executor-config"), (os.environ.get(CONFIG_ENV), f"${CONFIG_ENV}")):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"{what} {str(given)!r}: no such file (a TOML file with an [executor.NAME] table)")
            return path
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    default = base / "rkdbench" / "config.toml"
    return default if default.is_file() else None


def executor_options(options: type[S], name: str, given: Mapping[str, Any], path: Path | None) -> S:
    """`options` from the `[executor.<name>]` table of `path`, then the command line's `given` values (None or an
    empty tuple: not given) over them; every value checked by the Section's rules."""
    table: dict[str, Any] = {}
    if path is not None:
        executors = read_toml(path).get("executor", {})
        table = executors.get(name, {}) if isinstance(executors, dict) else {}
    from_file = options.parse(str(path), table)
    fields = options.fields()
    unknown = sorted(set(given) - set(fields))
    if unknown:  # a caller's bug, not the user's: the CLI builds `given` from the fields
        raise ValueError(f"no option(s) {unknown} in {options.__name__}")
    chosen = {k: v for k, v in given.items() if v is not None and v != ()}
    checked = options.parse("the command line", chosen)
    merged = {}
    for key in chosen:
        value = getattr(checked, key)
        merged[key] = getattr(from_file, key) + value if isinstance(value, tuple) else value
    return dataclasses.replace(from_file, **merged)
