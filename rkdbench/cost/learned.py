"""Predictions learned from reality: the wall times that finished cells logged (`schema.CELL_TRAIN_SECONDS`,
`CELL_EVAL_SECONDS`, with the device model and torch threads they ran with), read from the results store and
matched to cells of the same kind (method variant, student, teachers and protocol hash; any seed).

A cell's learned time is the median over the finished runs of its kind on the same device model, those with the
same thread count when there are any; `elsewhere` gives the times of its kind on another device (the one with the
most runs), for a driver that schedules cells on machines unlike its own. Reading never creates a store: a sqlite
store that does not exist yet has learned nothing.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import Cell
from ..tracking import Tracker, schema
from ..tracking.store import sqlite_path

__all__ = ["LearnedTime", "LearnedTimes", "kind_of_cell"]

Kind = tuple[str, str, str, str, tuple[tuple[str, str], ...]]  # protocol hash, variant, student, teacher, extras


def kind_of_cell(cell: Cell) -> Kind:
    """What a cell's wall time depends on besides the machine: everything but its seed."""
    return (cell.protocol.hash, cell.variant, cell.student, cell.teacher, tuple(sorted(cell.extra_teachers.items())))


def _kind_of_run(tags: dict[str, str]) -> Kind:
    extra_prefix = schema.TEACHER + "."
    extras = tuple(sorted((k[len(extra_prefix) :], v) for k, v in tags.items() if k.startswith(extra_prefix)))
    return (
        tags.get(schema.PROTOCOL_HASH, ""),
        tags.get(schema.METHOD_VARIANT, ""),
        tags.get(schema.STUDENT, ""),
        tags.get(schema.TEACHER, ""),
        extras,
    )


@dataclass(frozen=True)
class Sample:
    """One finished run's logged wall times."""

    kind: Kind
    cell: str
    device: str
    threads: int
    train: float
    eval: float


@dataclass(frozen=True)
class LearnedTime:
    """The median wall seconds of `runs` finished cells of one kind on `device` (with `threads`, "" when mixed)."""

    train: float
    eval: float
    runs: int
    device: str
    threads: str

    @property
    def total(self) -> float:
        return self.train + self.eval

    def describe(self) -> str:
        threads = f", {self.threads} thread{'s' if self.threads != '1' else ''}" if self.threads else ""
        return f"{self.runs} finished run{'s' if self.runs != 1 else ''} on {self.device}{threads}"


class LearnedTimes:
    """The logged wall times of a store's finished cells, by kind."""

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        self.samples = list(samples)
        self.finished = {s.cell for s in self.samples}  # cells with logged times (FINISHED runs)

    @classmethod
    def from_runs(cls, runs: Iterable[Any]) -> LearnedTimes:
        """From MLflow `Run`s (FINISHED cell runs); runs without logged wall times (resumed ones, or written by a
        version that did not log them) are left out."""
        samples = []
        for run in runs:
            tags, metrics = run.data.tags, run.data.metrics
            if schema.CELL_TRAIN_SECONDS not in metrics or schema.CELL_EVAL_SECONDS not in metrics:
                continue
            threads = tags.get(schema.THREADS, "")
            samples.append(
                Sample(
                    _kind_of_run(tags),
                    tags.get(schema.CELL, ""),
                    tags.get(schema.DEVICE_NAME, ""),
                    int(threads) if threads.isdigit() else 0,
                    float(metrics[schema.CELL_TRAIN_SECONDS]),
                    float(metrics[schema.CELL_EVAL_SECONDS]),
                )
            )
        return cls(samples)

    @classmethod
    def from_store(cls, tracker: Tracker, protocol_hashes: Iterable[str]) -> LearnedTimes:
        """The finished cell runs of these protocol hashes in the store (nothing when a sqlite store does not exist:
        reading must not create it)."""
        database = sqlite_path(tracker.uri)
        if database is not None and not database.is_file():
            return cls()
        runs = [
            run
            for protocol_hash in sorted(set(protocol_hashes))
            for run in tracker.search_runs(
                schema.runs_filter(schema.RunKind.CELL, finished=True, protocol_hash=protocol_hash),
                order_by=schema.NEWEST_FIRST,
            )
        ]
        return cls.from_runs(runs)

    def lookup(self, cell: Cell, device: str, threads: int) -> LearnedTime | None:
        """The cell's kind on this device model: the runs with the same threads if any, else all of them."""
        mine = [s for s in self.samples if s.kind == kind_of_cell(cell) and s.device == device]
        same_threads = [s for s in mine if s.threads == threads]
        return _median(same_threads or mine, device, str(threads) if same_threads else "")

    def elsewhere(self, cell: Cell, device: str) -> LearnedTime | None:
        """The cell's kind on another device model (the one with the most runs of it), or None."""
        others = [s for s in self.samples if s.kind == kind_of_cell(cell) and s.device != device]
        if not others:
            return None
        [(where, _)] = Counter(s.device for s in others).most_common(1)
        return _median([s for s in others if s.device == where], where, "")


def _median(samples: list[Sample], device: str, threads: str) -> LearnedTime | None:
    if not samples:
        return None
    return LearnedTime(
        statistics.median(s.train for s in samples),
        statistics.median(s.eval for s in samples),
        len(samples),
        device,
        threads,
    )
