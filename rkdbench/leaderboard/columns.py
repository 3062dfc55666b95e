"""Leaderboard columns beyond the accuracies: the training precision of each row (with a mark wherever a table
mixes bf16 and fp32 rows), the worst-class accuracy of each attack (shown next to AutoAttack's average) and the
student-to-teacher adversarial transferability of each attack (`rkdbench.evaluation.transfer`). Runs logged before these
metrics existed simply leave the columns empty, or absent when no run of the table has them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..tracking.schema import MEASURE_TAS, attack_measure_key, metric_column, metric_key

__all__ = ["row_cells", "run_precision", "mixes_precisions", "mean_std", "PRECISION_MARK"]

PRECISION_MARK = "†"
# frame column, `{}` being the attack label -> the metric it averages, of (split, label)
PER_ATTACK: dict[str, Callable[[str, str], str]] = {
    "worst_class_{}": lambda split, label: metric_key(split, label, worst_class=True),
    "tas_{}": lambda split, label: attack_measure_key(MEASURE_TAS, label, split),
}


def mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and sample std (NaN for a single value) of a row's seeds."""
    return values.mean(), values.std(ddof=1) if len(values) > 1 else float("nan")


def run_precision(run: pd.Series) -> str:
    """A run's training precision: its `rkdbench.precision` tag; for runs logged before the tag, the protocol's
    `train.precision` (absent = fp32; the legacy `auto` = bf16 on a CUDA device); "" when it cannot be told."""
    tag = run.get("precision")
    if isinstance(tag, str) and tag:
        return tag
    value = run.get("params.protocol.train.precision")
    if not isinstance(value, str) or not value:
        return "fp32"
    if value != "auto":
        return value
    device = run.get("device") if isinstance(run.get("device"), str) else run.get("params.protocol.train.device")
    return {"cuda": "bf16", "cpu": "fp32"}.get(str(device).split(":")[0], "")


def row_cells(group: pd.DataFrame, split: str, labels: list[str]) -> dict[str, float | str]:
    """The row's `precision` (seeds' precisions joined by "+" when they differ) and, per attack label with the
    metric in some run, `worst_class_<label>` / `tas_<label>` mean and std in %."""
    cells: dict[str, float | str] = {"precision": "+".join(sorted({run_precision(run) for _, run in group.iterrows()}))}
    for label in labels:
        for key, metric in PER_ATTACK.items():
            column = metric_column(metric(split, label))
            if column in group and group[column].notna().any():
                name = key.format(label)
                cells[f"{name}_mean"], cells[f"{name}_std"] = mean_std(group[column].astype(float) * 100)
    return cells


def mixes_precisions(frame: pd.DataFrame) -> bool:
    """Whether the table's rows (or a row's seeds) trained in more than one precision."""
    if "precision" not in frame:
        return False
    kinds = {kind for value in frame["precision"] for kind in str(value).split("+") if kind}
    return len(kinds) > 1
