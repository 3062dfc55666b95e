"""Running a suite: expand its cells, pick an executor, and let it prepare and run them.

An executor is the seam where cells meet workers: a function `(cells, tracker, options, prepare)` that calls
`prepare(cells, tracker, options)` (store and teachers) once before any cell starts, runs every cell through
`run.cell.run_cell` (exactly-once by itself: its lease and journal) and returns one `CellOutcome` per cell, in
the cells' order. `executors.serial` is this process's loop, `executors.local` runs `--workers N` such loops as
processes, and `executors.ray_executor` runs one Ray task per cell (it connects to the cluster before it
prepares, so a missing Ray or an unreachable `--address` fails before teachers are built).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Cell, Suite
from ..tracking import Tracker
from .cells import expand_cells
from .options import CellOutcome, RunOptions
from .prepare import prepare

__all__ = ["Executor", "Prepare", "run_suite", "pick_executor"]

Prepare = Callable[[list[Cell], Tracker, RunOptions], None]
Executor = Callable[[list[Cell], Tracker, RunOptions, Prepare], list[CellOutcome]]


def pick_executor(options: RunOptions) -> Executor:
    """`--workers N` (N > 1): local processes; `--executor ray`: Ray tasks; else this process."""
    if options.workers > 1:
        from .executors.local import run_local

        return run_local
    if options.executor == "ray":
        from .executors.ray_executor import run_on_ray

        return run_on_ray
    from .executors.serial import run_serial

    return run_serial


def run_suite(suite: Suite, options: RunOptions) -> list[CellOutcome]:
    """Run every cell (validated and prepared first); failures are recorded and the suite goes on. Any number of
    processes may run one suite on one store: they share the cells (`run_cell` is exactly-once)."""
    index, count = options.shard
    cells = expand_cells(suite)[index::count]
    return pick_executor(options)(cells, Tracker(options.results), options, prepare)
