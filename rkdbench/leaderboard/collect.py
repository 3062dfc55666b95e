"""The first stage of a leaderboard: read the store. `collect_runs` gives every FINISHED cell run as one pandas
frame (each cell key counted once, `counting`), and the loaders read, on demand and cached, what `tables` adds
per run: its per-example robustness (paired p-values), its config.toml (the protocol's attack order) and its
per-epoch validation history (`plots`).
"""

from __future__ import annotations

import math
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..tracking import Tracker, schema
from ..tracking.counting import counted_frame

__all__ = ["collect_runs", "per_example_loader", "config_loader", "history_loader", "IGNORED"]

IGNORED = "ignored_runs"  # collect_runs' attrs: protocol hash -> duplicate runs left out


def collect_runs(tracker: Tracker, protocol: str | None = None) -> pd.DataFrame:
    """All FINISHED cell runs (optionally of one protocol name) as a DataFrame from `mlflow.search_runs`; runs of
    another kind (`evaluation`, `leaderboard`) never appear."""
    tracker.check_reachable()
    names = tracker.experiments()
    if not names:
        return pd.DataFrame()
    runs = tracker.search_runs_frame(schema.finished_cells(protocol), list(names))
    if runs.empty:
        return runs
    runs, ignored = counted_frame(runs)  # each cell key once: `counting`
    runs["experiment"] = runs["experiment_id"].map(names)
    runs = runs.rename(columns=schema.short_column)
    runs.attrs[IGNORED] = ignored[schema.column(schema.PROTOCOL_HASH)].value_counts().to_dict() if len(ignored) else {}
    return runs


def _artifact_loader(tracker: Tracker, artifact: str, read: Callable[[Path], Any]) -> Callable[[str], Any]:
    """Read (and cache) one artifact of a run; None when the run has none or it cannot be read."""
    cache: dict[str, Any] = {}

    def load(run_id: str) -> Any:
        if run_id not in cache:
            try:
                with tempfile.TemporaryDirectory() as folder:
                    cache[run_id] = read(tracker.download_artifact(run_id, artifact, folder))
            except Exception:  # a run without the artifact only loses what it would add (a p-value, the order)
                cache[run_id] = None
        return cache[run_id]

    return load


def per_example_loader(tracker: Tracker) -> Callable[[str], pd.DataFrame | None]:
    """A run's `per_example.parquet` artifact; None when the run has none."""
    return _artifact_loader(tracker, "per_example.parquet", pd.read_parquet)


def config_loader(tracker: Tracker) -> Callable[[str], dict[str, Any] | None]:
    """A cell run's `config.toml` artifact (the resolved protocol, attacks in the protocol's order); None without."""
    return _artifact_loader(tracker, "config.toml", lambda path: tomllib.loads(path.read_text()))


def history_loader(tracker: Tracker, metric: str = schema.VAL_PGD_ACC) -> Callable[[str], list[tuple[int, float]]]:
    """A run's per-epoch values of `metric` as (step, value), sorted by step; the last value logged per step."""

    def load(run_id: str) -> list[tuple[int, float]]:
        points = {
            m.step: m.value for m in sorted(tracker.metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
        }
        return sorted((step, value) for step, value in points.items() if not math.isnan(value))

    return load
