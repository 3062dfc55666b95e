"""A cell's method object, built from one source: `build_method` (the registered method's name and the suite's
overrides) is the one place a method is instantiated for a cell. It is built once per method of a suite and carried
by its cells (`Cell.built_method`): the cell key reads its resolved params and version, and training, the dry run's
cost and calibration read the same object through `method_of`. Whatever runs training steps takes `fresh_method`, a
copy, so the carried object stays as built. A cell sent to another process (`--workers`, Ray, Slurm) travels without
the object, because a `--plugins-dir` method's class exists there only once that process has loaded its plugins:
`method_of` builds it there, once per cell.
"""

from __future__ import annotations

import copy
from typing import Any

from ..config import Cell
from ..plugins import get_registry
from .method import MethodBase

__all__ = ["build_method", "method_of", "fresh_method"]


def build_method(name: str, overrides: dict[str, Any]) -> MethodBase:
    """The one place a cell's method is instantiated: the registered method `name` with `overrides`."""
    return get_registry().get("method", name).instantiate(**overrides)


def method_of(cell: Cell) -> MethodBase:
    """The cell's method object, as built; built here once when the cell came from another process."""
    if cell.built_method is None:
        object.__setattr__(cell, "built_method", build_method(cell.method, cell.method_overrides))  # a cache field
    return cell.built_method


def fresh_method(cell: Cell) -> MethodBase:
    """A copy of the cell's method object for a run of training steps, which may change its state."""
    return copy.deepcopy(method_of(cell))
