"""`--executor local` (the default): this process runs the cells, or with `--workers N`, N worker processes on this
machine share one store and the suite's cells.

Each worker is the `serial` loop in a fresh (spawned) process; the cells come longest first, worker i starts at the
i-th and each then takes the next cell no other worker holds (a held cell costs a look at its lease), so the
longest cells start first whatever the number of workers; the cells' leases and journals make every cell
exactly-once, as for N separate `rkdbench run` processes. Each worker gets `max(1, cpu_count // N)` torch threads
unless `OMP_NUM_THREADS` is set. Workers send their lines and outcomes to the parent, which prints them, the suite
status line, and returns one outcome per cell (a cell finished by one worker and seen finished by another
counts once, as finished). `--plugins-dir` folders are loaded again in each worker.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue as queue_module
from dataclasses import dataclass
from typing import Any

from rkdbench import (
    CellOutcome,
    Executor,
    Tracker,
    at_least,
    executor_option,
    hookimpl,
    loaded_plugin_dirs,
    prepare_worker,
    run_cells,
    say,
    suite_status,
)

__all__ = ["Local", "LocalOptions", "run_local_cells", "worker_threads"]

# When two workers report one cell, the one that did the work wins; `elsewhere` only stands when no worker of
# this executor ended the cell (another process did).
PRIORITY = {"finished": 3, "failed": 3, "undelivered": 3, "skipped": 2, "elsewhere": 1}


def worker_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


class _QueueConsole:
    """What a worker prints goes to the parent (rich markup kept); per-epoch lines, never live bars."""

    is_terminal = False

    def __init__(self, queue: Any, worker: int) -> None:
        self.queue, self.worker = queue, worker

    def print(self, message: Any = "", **_: Any) -> None:
        self.queue.put(("say", self.worker, str(message)))


@dataclass(frozen=True)
class LocalOptions:
    workers: int = executor_option(
        1,
        "Worker processes on this machine sharing the cells (each with cpu_count/N torch threads unless "
        "OMP_NUM_THREADS is set). Separate `rkdbench run` processes on one store share them as well.",
        rule=at_least(1),
    )


class Local(Executor):
    name = "local"
    description = "this process (or --workers N processes on this machine)"
    Options = LocalOptions

    def parallelism(self, cells, options) -> int:
        return self.options.workers

    def run(self, cells, tracker, options, prepare):
        """Prepare here (teachers built once), then run the cells in this process or on N worker processes."""
        prepare(cells, tracker, options)
        if self.options.workers == 1:
            return run_cells(cells, tracker, options)
        return run_local_cells(cells, options, self.options.workers)


def _worker(cells: list, options: Any, index: int, workers: int, plugin_dirs: list[str], queue: Any) -> None:
    # the cells came without their method objects: built in prepare_worker, now that the plugins are loaded
    prepare_worker(cells, plugin_dirs, None if "OMP_NUM_THREADS" in os.environ else worker_threads(workers))
    options = dataclasses.replace(options, console=_QueueConsole(queue, index))

    def report(outcome: CellOutcome, seconds: float) -> None:
        queue.put(
            (
                "outcome",
                index,
                (
                    outcome.cell.key,
                    outcome.status,
                    outcome.run_id,
                    outcome.metrics,
                    outcome.error,
                    outcome.resumed_from,
                    seconds,
                ),
            )
        )

    run_cells(
        cells,
        Tracker(options.results),
        options,
        report=report,
        start=index,  # the cells come longest first: worker i starts at the i-th, each then takes the next free one
        worker=f" w{index + 1}",
    )


def run_local_cells(cells: list, options: Any, workers: int) -> list[CellOutcome]:
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state, no inherited MLflow clients
    queue = context.Queue()
    child_options = dataclasses.replace(options, console=None)
    processes = [
        context.Process(
            target=_worker,
            args=(cells, child_options, i, workers, loaded_plugin_dirs(), queue),
            name=f"rkdbench-worker-{i + 1}",
        )
        for i in range(workers)
    ]
    say(
        options,
        f"{len(cells)} cells on {workers} local workers ({worker_threads(workers)} torch thread"
        f"{'s' if worker_threads(workers) != 1 else ''} each"
        f"{'' if 'OMP_NUM_THREADS' not in os.environ else ', OMP_NUM_THREADS=' + os.environ['OMP_NUM_THREADS']})",
    )
    for process in processes:
        process.start()
    by_key = {cell.key: cell for cell in cells}
    outcomes: dict[str, CellOutcome] = {}
    counted: list[CellOutcome] = []
    seconds: list[float] = []
    try:
        while True:
            try:
                kind, _worker_index, payload = queue.get(timeout=0.5)
            except queue_module.Empty:
                if not any(p.is_alive() for p in processes):
                    break
                continue
            if kind == "say":
                say(options, payload)
                continue
            key, status, run_id, metrics, error, resumed_from, spent = payload
            outcome = CellOutcome(by_key[key], status, run_id, metrics, error, resumed_from)
            previous = outcomes.get(key)
            if previous is not None and PRIORITY[previous.status] >= PRIORITY[status]:
                continue
            outcomes[key] = outcome
            if status in ("finished", "failed", "undelivered"):
                seconds.append(spent)
            if status != "elsewhere" and previous is None:
                counted.append(outcome)
                say(options, f"[dim]{suite_status(counted, len(cells), seconds, workers, options.predicted)}[/]")
    except KeyboardInterrupt:
        for process in processes:  # the workers got the same Ctrl-C: each marks its cell KILLED, resumable
            process.join(timeout=30)
        raise
    finally:
        for process in processes:
            process.join(timeout=5)
    for cell in cells:
        if cell.key not in outcomes:
            codes = ", ".join(str(p.exitcode) for p in processes)
            outcomes[cell.key] = CellOutcome(
                cell,
                "failed",
                error=f"no worker reported this cell (worker exit codes {codes}); rerun the suite to resume it",
            )
    return [outcomes[cell.key] for cell in cells]


@hookimpl
def register_executors(register):
    register(Local)
