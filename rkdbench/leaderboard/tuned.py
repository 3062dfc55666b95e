"""The tuned view of a leaderboard: each method's configuration selected by an equal-budget study (`rkdbench tune`),
next to the official recipes' view.

`collect_studies` reads the FINISHED runs of kind `study` (one per study and budget; a study rerun with a larger
budget counts with its largest). `tuned_tables` gathers the selected configurations' cells (the study's
`tuned_cells`, one per seed, found among the FINISHED cell runs whatever protocol hash their overrides gave them),
shows them under the suite protocol's hash and the study's method variant, and builds them like any leaderboard
(`tables.build_tables`: same columns, mean ± std over seeds, ranking, paired p-values), one table per protocol and
search setup (budget, sampler and its seed, objective, pruner), so only studies of equal budget share a table. Each
row then gets its study's columns: budget, finished trials, sampler, the selected trial and its changed values, the
best validation score, the epochs and seconds (GPU-hours when trained on GPUs) the trials spent; the table gets each
row's expected best validation score after n = 1..N trials (Tang et al.'s unbiased estimator, `tuning.budget`) and a
trade-off note when the selected configurations' clean accuracies lie more than `TRADEOFF_MARGIN` points apart.
`official_runs` leaves out of the official view the cells only a tuned configuration produced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from ..teachers.accuracy import TeacherAccuracies
from ..tracking import Tracker, schema
from ..tracking.counting import counted_frame
from ..tuning.budget import budget_curve
from .table import TUNED, Table
from .tables import GROUP, build_tables

__all__ = [
    "TRADEOFF_MARGIN",
    "SETUP",
    "TUNING_COLUMNS",
    "collect_studies",
    "score_loader",
    "official_runs",
    "tuned_tables",
    "row_label",
    "setup_name",
]

TRADEOFF_MARGIN = 5.0  # clean-accuracy points between selected configurations beyond which the table warns
SETUP = ["budget", "sampler", "sampler_seed", "objective", "pruner"]  # studies share a table only if these agree
SCORE_METRIC = "study.trial_value"  # a study run's finished trials' objective values, one step per trial
# the columns a tuned table adds to a leaderboard's (CSV/JSON; `shown` displays them)
TUNING_COLUMNS = [
    "budget",
    "trials",
    "sampler",
    "objective",
    "pruner",
    "selected_trial",
    "selected",
    "best_val",
    "tuning_epochs",
    "tuning_seconds",
    "tuning_gpu_hours",
    "study",
]


def collect_studies(tracker: Tracker, protocol: str | None = None) -> pd.DataFrame:
    """The FINISHED study runs (of one protocol name), one per study: the one with the largest budget."""
    names = tracker.experiments()
    if not names:
        return pd.DataFrame()
    studies = tracker.search_runs_frame(schema.finished_studies(protocol), list(names))
    if studies.empty:
        return studies
    studies, _ = counted_frame(studies)
    studies = studies.rename(columns=schema.short_column)
    studies["experiment"] = studies["experiment_id"].map(names)
    studies["budget"] = studies["budget"].astype(int)
    studies = studies.sort_values(["study", "budget", "start_time"]).drop_duplicates("study", keep="last")
    return studies.reset_index(drop=True)


def score_loader(tracker: Tracker) -> Callable[[str], list[float]]:
    """A study run's finished (complete) trials' objective values, in trial order."""

    def load(run_id: str) -> list[float]:
        points = {m.step: m.value for m in tracker.metric_history(run_id, SCORE_METRIC)}
        return [points[step] for step in sorted(points) if not math.isnan(points[step])]

    return load


def _keys(studies: pd.DataFrame) -> pd.Series:
    return studies["tuned_cells"].fillna("").map(lambda text: [key for key in str(text).split(",") if key])


def official_runs(runs: pd.DataFrame, studies: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The cell runs of the official view: without the cells of configurations a study selected over its official
    recipe (those rows belong to the tuned view); returns them and how many were left out."""
    if runs.empty or studies.empty:
        return runs, 0
    tuned = studies[studies["selected_trial"].astype(str) != "0"]
    keys = {key for keys in _keys(tuned) for key in keys}
    kept = runs[~runs["cell"].isin(keys)]
    return kept, len(runs) - len(kept)


def row_label(method_variant: str, student: str, teacher: str) -> str:
    return f"{method_variant} / {student} / {teacher}"


def setup_name(table: Table) -> str:
    """A short name of a tuned table's search setup: `b12-qmc0-val.pgd_acc-none`."""
    first = table.frame.iloc[0]
    sampler = first["sampler"].replace(" (seed ", "").rstrip(")")
    return f"b{first['budget']}-{sampler}-{first['objective']}-{first['pruner']}"


def _selected(study: pd.Series) -> str:
    overrides = json.loads(study.get("selected_overrides") or "{}")
    if not overrides:
        return f"official (trial {study['selected_trial']})"
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(overrides.items()))
    return f"trial {study['selected_trial']}: {shown}"


def _metric(study: pd.Series, name: str) -> float:
    value = study.get(f"metrics.{name}")
    return float(value) if value is not None and not pd.isna(value) else math.nan


def tuned_tables(
    runs: pd.DataFrame,
    studies: pd.DataFrame,
    scores: Callable[[str], list[float]],
    selection: str = "last",
    per_example: Callable[[str], pd.DataFrame | None] | None = None,
    *,
    config: Callable[[str], dict[str, Any] | None] | None = None,
    teachers: TeacherAccuracies | None = None,
    ui_url: str = "",
) -> list[Table]:
    """One tuned `Table` per protocol and search setup with studies whose selected cells have finished runs."""
    if runs.empty or studies.empty:
        return []
    studies = studies.assign(_keys=_keys(studies))
    tables = []
    for _, group in studies.groupby(["protocol", "protocol_hash", *SETUP], sort=True):
        parts, by_row = [], {}
        for _, study in group.iterrows():
            cells = runs[runs["cell"].isin(study["_keys"])]
            if cells.empty:
                continue
            parts.append(
                cells.assign(
                    method_variant=study["method_variant"],
                    protocol_hash=study["protocol_hash"],
                    experiment=study["experiment"],
                    experiment_id=study["experiment_id"],
                )
            )
            by_row[(study["method_variant"], study["student"], study["teacher"])] = study
        if not parts:
            continue
        frame = pd.concat(parts, ignore_index=True)
        for table in build_tables(
            frame, selection, per_example, config=config, references=[], teachers=teachers, ui_url=ui_url
        ):
            tables.append(_with_studies(table, by_row, scores))
    return tables


def _with_studies(table: Table, by_row: dict[tuple, pd.Series], scores: Callable[[str], list[float]]) -> Table:
    """The table with each row's study columns, budget curves, notes and the tuned view."""
    frame = table.frame
    rows = [by_row[tuple(row[c] for c in GROUP)] for _, row in frame.iterrows()]
    columns = {
        "budget": [int(s["budget"]) for s in rows],
        "trials": [int(_metric(s, "study.trials")) for s in rows],
        "sampler": [f"{s['sampler']} (seed {s['sampler_seed']})" for s in rows],
        "objective": [s["objective"] for s in rows],
        "pruner": [s["pruner"] for s in rows],
        "selected_trial": [int(s["selected_trial"]) for s in rows],
        "selected": [_selected(s) for s in rows],
        "best_val": [100 * _metric(s, "study.best_value") for s in rows],
        "tuning_epochs": [_metric(s, "study.epochs") for s in rows],
        "tuning_seconds": [_metric(s, "study.train_seconds") for s in rows],
        "tuning_gpu_hours": [_metric(s, "study.gpu_hours") for s in rows],
        "study": [s["study"] for s in rows],
    }
    frame = frame.assign(**columns)
    table.frame = frame
    table.view = TUNED
    table.curves = {
        row_label(*(row[c] for c in GROUP)): [100 * v for v in budget_curve(values, "tang")] if values else []
        for (_, row), values in zip(frame.iterrows(), (scores(s["run_id"]) for s in rows))
    }
    first = rows[0]
    table.notes = [
        f"Each row is the configuration its own study selected on the validation split: {first['budget']} finished "
        f"trials per method, sampler {first['sampler']} (seed {first['sampler_seed']}), objective "
        f"{first['objective']} at the last epoch, pruner {first['pruner']}; trial 0 of every study is the official "
        "recipe. The accuracies are the selected configuration's cells on the test split (one per seed)."
    ]
    tradeoff = tradeoff_note(frame)
    if tradeoff:
        table.notes.append(tradeoff)
    return table


def tradeoff_note(frame: pd.DataFrame, margin: float = TRADEOFF_MARGIN) -> str:
    """A note when the rows' clean accuracies lie more than `margin` points apart ('' otherwise): robust accuracy
    trades against clean accuracy, so rows far apart in clean accuracy compare poorly (goldblum/ARD issue 2)."""
    if "clean_mean" not in frame or frame["clean_mean"].notna().sum() < 2:
        return ""
    clean = frame["clean_mean"].dropna()
    spread = clean.max() - clean.min()
    if spread <= margin:
        return ""
    low, high = frame.loc[clean.idxmin()], frame.loc[clean.idxmax()]
    return (
        f"Trade-off: the selected configurations' clean accuracies differ by {spread:.1f} points (more than "
        f"{margin:g}): {low['method_variant']} {low['clean_mean']:.1f} to {high['method_variant']} "
        f"{high['clean_mean']:.1f}; robust accuracies compared at such different clean accuracies say little."
    )
