"""Worst-class accuracy (Fair-ARD's robust-fairness metric, METHODS-2.md §4): per class c, r_c = the number of
test points of class c still correct under an attack divided by the **actual** number of test points of class c
among those evaluated (the protocols evaluate the first `n_examples` test points, not a class-stratified subset,
so n_c varies); the worst class is min_c r_c, and the average stays the per-example mean.

`per_class_table` gives n_c and the correct counts of every evaluated column (clean, each attack, worst case) as a
frame (the run's `per_class.csv` artifact); `worst_class_metrics` gives `worst_class_<label>_acc` and
`worst_class_<label>_class` (the argmin, the lowest class index on ties) for each label.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from ..tracking.schema import CLASS, metric_key

__all__ = ["per_class_table", "worst_class_metrics"]


def per_class_table(per_example: dict[str, Tensor], y: Tensor, labels: list[str]) -> pd.DataFrame:
    """One row per class present among the evaluated points: `class`, `n`, and `<label>_correct` per label."""
    y = y.cpu()
    classes = torch.unique(y)
    rows = {"class": classes.tolist(), "n": [int((y == c).sum()) for c in classes]}
    for label in labels:
        correct = per_example[label].cpu().bool()
        rows[f"{label}_correct"] = [int(correct[y == c].sum()) for c in classes]
    return pd.DataFrame(rows)


def worst_class_metrics(per_example: dict[str, Tensor], y: Tensor, labels: list[str]) -> dict[str, float]:
    """`worst_class_<label>_acc` = min over classes of the per-class accuracy, and `worst_class_<label>_class`."""
    table = per_class_table(per_example, y, labels)
    metrics: dict[str, float] = {}
    if table.empty:
        return metrics
    for label in labels:
        rates = table[f"{label}_correct"] / table["n"]
        worst = int(rates.to_numpy().argmin())  # the first (lowest-index) class on ties
        metrics[metric_key(None, label, worst_class=True)] = float(rates.iloc[worst])
        metrics[metric_key(None, label, CLASS, worst_class=True)] = float(table["class"].iloc[worst])
    return metrics
