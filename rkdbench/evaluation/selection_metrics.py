"""The diagnostics every evaluated selection (`last`, `best-val`) of a cell gets from its evaluation, computed from the
per-example results alone: worst-class accuracy for clean, each attack and the worst case
(`rkdbench.evaluation.worst_class`), and student-to-teacher adversarial transferability for each attack when the
evaluation carried a teacher probe (`rkdbench.evaluation.transfer`). Also the per-class counts of every selection as one
frame (the run's `per_class.csv`).
"""

from __future__ import annotations

import pandas as pd
from torch import Tensor

from ..config.attack_entry import RESERVED_LABELS
from ..tracking.schema import metric_key
from .evaluate import Evaluation
from .transfer import transfer_metrics
from .worst_class import per_class_table, worst_class_metrics

__all__ = ["selection_metrics", "per_class_frame", "accuracy_labels"]


def accuracy_labels(evaluation: Evaluation) -> list[str]:
    """The evaluated correctness columns: `clean`, each attack label in the protocol's order, `worst`."""
    return [name for name in evaluation.per_example if metric_key(None, name) in evaluation.metrics]


def selection_metrics(evaluation: Evaluation, y: Tensor) -> dict[str, float]:
    """`worst_class_<label>_acc` / `_class` for every accuracy column, and the transferability metrics."""
    labels = accuracy_labels(evaluation)
    attacks = [label for label in labels if label not in RESERVED_LABELS]
    return {
        **worst_class_metrics(evaluation.per_example, y, labels),
        **transfer_metrics(evaluation.per_example, y, attacks),
    }


def per_class_frame(results: dict[str, Evaluation], y: Tensor) -> pd.DataFrame:
    """Per selection and class: n and the correct count of every accuracy column."""
    frames = [
        per_class_table(evaluation.per_example, y, accuracy_labels(evaluation)).assign(selection=selection)
        for selection, evaluation in results.items()
    ]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["selection", *[c for c in frame.columns if c != "selection"]]]
