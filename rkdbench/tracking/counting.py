"""Each cell key counts once: the one rule every reader of the store applies (the runner, leaderboards, compare,
the UI and the `--json` summaries).

Today's runner creates at most one run per cell key (under the cell's lease), but a store written by an older
version can hold several runs of one key (concurrent workers trained a cell twice). They would count as extra
seeds. The run that counts is the newest FINISHED one (by start time); with none finished, the newest run (it
is the one a rerun resumes). The other runs of the key are ignored, and the callers say how many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import pandas as pd

from . import schema

__all__ = ["counted_runs", "counted_frame", "ignored_duplicates", "ignored_note", "CELL_TAG"]

CELL_TAG = schema.CELL
T = TypeVar("T")


def _rank(status: str, start_time: Any) -> tuple[bool, float]:
    return status == "FINISHED", float(start_time or 0)


def _pick(
    items: Iterable[T], cell: Callable[[T], str | None], status: Callable[[T], str], start_time: Callable[[T], Any]
) -> tuple[list[T], int]:
    """The counted item of each cell key (items without a key are kept as they are), and how many were ignored."""
    best: dict[str, T] = {}
    kept: list[T] = []
    ignored = 0
    for item in items:
        key = cell(item)
        if not key:
            kept.append(item)
            continue
        if key in best:
            ignored += 1
            if _rank(status(item), start_time(item)) <= _rank(status(best[key]), start_time(best[key])):
                continue
        best[key] = item
    return kept + list(best.values()), ignored


def counted_runs(runs: Sequence[Any]) -> tuple[list[Any], int]:
    """MLflow `Run` objects -> (the counted run of each cell key, number of ignored runs)."""
    return _pick(runs, lambda r: r.data.tags.get(CELL_TAG), lambda r: r.info.status, lambda r: r.info.start_time)


def counted_frame(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A `mlflow.search_runs` DataFrame -> (one row per cell key in the original order, the ignored rows)."""
    column = schema.column(CELL_TAG)
    if runs.empty or column not in runs.columns:
        return runs, runs.iloc[:0]
    start = (
        runs["start_time"].map(lambda t: pd.Timestamp(t).value if pd.notna(t) else 0)
        if "start_time" in runs.columns
        else pd.Series(0, index=runs.index)
    )
    rows = list(runs.index)
    kept, _ = _pick(
        rows,
        lambda i: runs.at[i, column] if pd.notna(runs.at[i, column]) else None,
        lambda i: runs.at[i, "status"],
        lambda i: start[i],
    )
    kept_set = set(kept)
    return runs.loc[[i for i in rows if i in kept_set]], runs.loc[[i for i in rows if i not in kept_set]]


def ignored_duplicates(tracker: Any, protocol_hash: str | None = None) -> int:
    """How many cell runs in the store (optionally of one protocol hash) are ignored duplicates; MLflow's own
    runs table still lists them."""
    return counted_runs(tracker.search_runs(schema.all_cells(protocol_hash), max_results=50000))[1]


def ignored_note(ignored: int) -> str:
    """The line every command prints when duplicates were ignored ('' when none)."""
    if not ignored:
        return ""
    return (
        f"{ignored} duplicate run{'s' if ignored != 1 else ''} of already counted cells ignored (the newest "
        f"FINISHED run of each cell key counts; older rkdbench versions could train a cell twice)"
    )
