"""The order a suite's cells are handed to an executor, and the predictions behind the suite's ETA: longest first
by predicted wall time, so that the last cells to start are short and a suite's tail is short whatever runs it.

The predictions are `rkdbench.cost.planning`'s, made without running anything: the logged times of finished cells
of the same kind in the run's own store (read once), else this device's calibration, else the same kind's times
on another device; cells with none are placed by the passes their method declares. FINISHED cells go first: they
are skipped at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..config import Cell
from ..cost.calibration.store import dataset_of
from ..cost.learned import LearnedTimes
from ..cost.planning import CellPlan, format_seconds, longest_first, plan_cells, predicted_seconds
from ..tracking import Tracker
from ..tracking.store import sqlite_path
from ..training.engine import pick_device
from .options import RunOptions

__all__ = ["Schedule", "schedule"]


@dataclass(frozen=True)
class Schedule:
    """`order`: indices of the cells, in the order to run them; `plans`: each cell's prediction (cells' order)."""

    order: list[int]
    plans: list[CellPlan]

    @property
    def predicted(self) -> dict[str, float | None]:
        return predicted_seconds(self.plans)

    def line(self) -> str:
        """What the order rests on, said once before the cells start."""
        sources = Counter(p.source for p in self.plans if not p.finished)
        finished = sum(p.finished for p in self.plans)
        named = {
            "learned": "from finished cells' logged times",
            "learned elsewhere": "from finished cells' times on another device",
            "calibration": "from this device's calibration",
            "none": "without a prediction (placed by their methods' declared passes)",
        }
        parts = [f"{sources[s]} {named[s]}" for s in named if sources[s]]
        if not parts:
            return f"cells: all {finished} finished (skipped)"
        known = [p.prediction.total for p in self.plans if p.prediction is not None and not p.finished]
        total = f"; {format_seconds(sum(known))} of cell time predicted" if known else ""
        done = f"{finished} finished first (skipped), then " if finished else ""
        return f"cells longest first: {done}{'; '.join(parts)}{total}"


def schedule(cells: list[Cell], tracker: Tracker, options: RunOptions) -> Schedule:
    """The cells' predictions and the longest-first order. A tracking server is checked first, so that one that
    does not answer is the same one line (exit 2) as before any run; a sqlite store that does not exist yet has
    no finished cells."""
    if not cells:
        return Schedule([], [])
    if sqlite_path(tracker.uri) is None:
        tracker.check_reachable()
    learned = LearnedTimes.from_store(tracker, {cell.protocol.hash for cell in cells})
    protocol = cells[0].protocol
    device = pick_device(options.device or protocol.train.device)
    sizes = getattr(dataset_of(protocol), "split_sizes", None)
    plans, _ = plan_cells(cells, options.model_dir, sizes, device, learned=learned)
    return Schedule(longest_first(plans), plans)
