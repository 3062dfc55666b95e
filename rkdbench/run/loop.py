"""One worker's loop over a suite's cells, in this process (the `serial` and `local` executors' loop, and every
`--workers` process's): a pass in which cells held by other workers are passed over, then a
wait for those: each ends when another worker finished (or failed) it, or when its holder is gone and this
worker takes it over (resuming from the checkpoint in the same run). Every cell gets exactly one outcome.

Outcome statuses: `finished` (trained, or its journal delivered, here), `skipped` (FINISHED before this worker
looked), `elsewhere` (another worker finished or failed it while this one waited), `failed`, `undelivered`
(trained here, the tracking store did not answer by the end: the next run delivers it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ..config import Cell
from ..tracking import Tracker
from ..tracking.journal import is_unreachable
from .cell import protocol_experiment, run_cell
from .lease import CellLease
from .options import CellOutcome, RunOptions
from .progress import say, suite_status

__all__ = ["run_cells", "RAN", "POLL_SECONDS"]

POLL_SECONDS = 5.0  # how often a waiting worker looks at the cells others hold ($RKDBENCH_WAIT_POLL_SECONDS)
RAN = ("finished", "failed", "undelivered")  # statuses whose wall time counts toward the suite's ETA


def run_cells(
    cells: list[Cell],
    tracker: Tracker,
    options: RunOptions,
    report: Callable[[CellOutcome, float], None] | None = None,
    start: int = 0,
    worker: str = "",
    poll_seconds: float | None = None,
) -> list[CellOutcome]:
    """Run `cells` (beginning at index `start`, wrapping around) and return one outcome per cell in their order.
    `report(outcome, seconds)` is called for each final outcome; without it the suite status line is printed."""
    if poll_seconds is None:
        poll_seconds = float(os.environ.get("RKDBENCH_WAIT_POLL_SECONDS", POLL_SECONDS))
    positions = {cell.key: f"[{i}/{len(cells)}]{worker}" for i, cell in enumerate(cells, 1)}
    outcomes: dict[str, CellOutcome] = {}
    seconds: list[float] = []

    def record(outcome: CellOutcome, elapsed: float) -> None:
        outcomes[outcome.cell.key] = outcome
        if outcome.status in RAN:
            seconds.append(elapsed)
        if report is not None:
            report(outcome, elapsed)
        else:
            status = suite_status(list(outcomes.values()), len(cells), seconds, predicted=options.predicted)
            say(options, f"[dim]{status}[/]")

    held: list[Cell] = []
    for cell in cells[start:] + cells[:start]:
        started = time.perf_counter()
        outcome = _run_cell(cell, tracker, options, positions[cell.key])
        if outcome.status == "held":
            held.append(cell)
        else:
            record(outcome, time.perf_counter() - started)
    said = 0
    while held:
        if len(held) != said:  # once per change, not every poll: a held GPU cell can take hours
            said = len(held)
            say(
                options,
                f"[dim]waiting for {said} cell{'s' if said != 1 else ''} held by other workers "
                f"(checking every {poll_seconds:g}s)[/]",
            )
        time.sleep(poll_seconds)
        waiting = []
        for cell in held:
            started = time.perf_counter()
            try:
                outcome = _after_wait(cell, tracker, options, positions[cell.key])
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                outcome = CellOutcome(cell, "held")  # the store is away: keep waiting for it
            if outcome.status == "held":
                waiting.append(cell)
            else:
                record(outcome, time.perf_counter() - started)
        held = waiting
    return [outcomes[cell.key] for cell in cells]


def _after_wait(cell: Cell, tracker: Tracker, options: RunOptions, position: str) -> CellOutcome:
    """A cell this worker found held: ended by its holder (`elsewhere`), still held, or taken over."""
    experiment_id = protocol_experiment(tracker, cell.home)
    lease = CellLease(options.results / "cells" / cell.key)
    if not lease.acquire():
        return CellOutcome(cell, "held", error=lease.holder())
    try:  # the lease is free: nobody trains the cell now; did its last holder end it?
        run = tracker.find_run(experiment_id, cell.key)
    finally:
        lease.release()
    if run is not None and run.info.status in ("FINISHED", "FAILED"):
        ended = "finished" if run.info.status == "FINISHED" else "failed"
        say(options, f"[dim]{position} {ended} by another worker: {cell.label} (run {run.info.run_id})[/]")
        return CellOutcome(
            cell,
            "elsewhere",
            run.info.run_id,
            dict(run.data.metrics),
            error="" if ended == "finished" else "failed in another worker",
        )
    return _run_cell(cell, tracker, options, position)  # its holder died: take it over (or someone else did)


def _run_cell(cell: Cell, tracker: Tracker, options: RunOptions, position: str) -> CellOutcome:
    """`run_cell`, except that a store that does not answer before the cell's run exists fails this cell with
    one line (nothing trained; a rerun starts it) and the worker goes on."""
    try:
        return run_cell(cell, tracker, options, position=position)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        error = f"tracking store {tracker.uri} unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        say(options, f"[red]{position} not started {cell.label}: {error}[/]")
        return CellOutcome(cell, "failed", error=f"{error}; run the suite again to train it")
