"""Running a suite: expand its cells, pick an executor, and let it prepare and run them.

An executor is the seam where cells meet workers: a function `(cells, tracker, options, prepare)` that calls
`prepare(cells, tracker, options)` (store and teachers) once before any cell starts, runs every cell through
`run.cell.run_cell` (exactly-once by itself: its lease and journal) and returns one `CellOutcome` per cell, in
the cells' order. `executors.serial` is this process's loop, `executors.local` runs `--workers N` such loops as
processes, `executors.ray_executor` runs one Ray task per cell (it connects to the cluster before it
prepares, so a missing Ray or an unreachable `--address` fails before teachers are built), and
`executors.slurm` submits the cells as one Slurm job array (its `check` runs first).
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
    """`--workers N` (N > 1): local processes; `--executor ray`: Ray tasks; `--executor slurm`: a Slurm job array;
    else this process."""
    if options.workers > 1:
        from .executors.local import run_local

        return run_local
    if options.executor == "ray":
        from .executors.ray_executor import run_on_ray

        return run_on_ray
    if options.executor == "slurm":
        return _slurm(options)
    from .executors.serial import run_serial

    return run_serial


def _slurm(options: RunOptions) -> Executor:
    """The Slurm executor with its options (command line over the user config file), checked before it runs."""
    from .executors.settings import config_path, executor_options
    from .executors.slurm import SlurmExecutor
    from .executors.slurm_options import SlurmOptions

    path = config_path(options.executor_config)
    executor = SlurmExecutor(executor_options(SlurmOptions, SlurmExecutor.name, options.executor_options, path))

    def run_checked(cells: list[Cell], tracker: Tracker, run: RunOptions, prepare: Prepare) -> list[CellOutcome]:
        executor.check(cells, run)
        return executor.run(cells, tracker, run, prepare)

    return run_checked


def run_suite(suite: Suite, options: RunOptions) -> list[CellOutcome]:
    """Run every cell (validated and prepared first); failures are recorded and the suite goes on. Any number of
    processes may run one suite on one store: they share the cells (`run_cell` is exactly-once)."""
    index, count = options.shard
    cells = expand_cells(suite)[index::count]
    return pick_executor(options)(cells, Tracker(options.results), options, prepare)
