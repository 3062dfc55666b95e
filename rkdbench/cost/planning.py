"""`--dry-run` wall-time predictions: a suite's cells priced from this device's calibration when there is one.

For each cell, `rkdbench.cost.calibration.predict_cell` with the expected (clean, robust) accuracy that sets
AutoAttack's cost; before training that accuracy is unknown, so it is assumed to be the cell's teacher's (its
measured card, else its reported numbers; teacher-free cells take the protocol's teacher), else `DEFAULT_ACCURACY`,
and every prediction says which. A cell whose combination was never calibrated on this device falls back to the
FLOP-based GPU-hour estimate (`rkdbench.cost.estimate`), and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..attacks.traits import CLEAN, legacy_specs, ranked_accuracy
from ..config import Cell, attack_entries
from ..tracking.schema import metric_key
from .calibration import Calibration, Prediction, predict_cell

__all__ = ["DEFAULT_ACCURACY", "CellPlan", "expected_accuracy", "plan_cells", "format_seconds"]

DEFAULT_ACCURACY = (0.8, 0.5)  # clean, AutoAttack: when no teacher card gives numbers


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    prediction: Prediction | None  # None: not calibrated here, the FLOP estimate stands
    accuracy: tuple[float, float]
    accuracy_from: str


def expected_accuracy(cell: Cell, model_dir: Path) -> tuple[tuple[float, float], str]:
    """The (clean, robust) accuracy assumed for the trained student, and where it comes from."""
    from ..plugins import create
    from ..teachers.model_dir import read_measured_card

    teacher = cell.reference_teacher
    if teacher:
        card = create("teacher", teacher)
        for source, numbers in (("measured", read_measured_card(card, model_dir) or {}), ("reported", card.reported)):
            robust, clean = _robust_accuracy(numbers), numbers.get(metric_key(None, CLEAN))
            if clean is not None and robust is not None:
                scale = 100.0 if clean > 1 else 1.0  # reported cards are in percent
                return (clean / scale, robust / scale), f"teacher {teacher} ({source})"
    return DEFAULT_ACCURACY, "default"


def _robust_accuracy(numbers: dict[str, Any]) -> float | None:
    """A teacher card's robust accuracy: the one its protocol ranks by (`attack_traits.ranked_accuracy`). A
    measured card names the attacks it ran (`attacks`); a reported card (a plugin's published numbers) uses the
    labels the attack plugins declare for the built-in protocols (`legacy_specs`: its final attack's)."""
    specs = attack_entries(numbers["attacks"]) if "attacks" in numbers else legacy_specs()
    ranked = ranked_accuracy(numbers, specs)
    return None if ranked is None else ranked[1]


def plan_cells(
    cells: list[Cell],
    model_dir: Path,
    split_sizes: tuple[int, int, int],
    device: torch.device,
    calibration_dir: Path | None = None,
) -> tuple[list[CellPlan], Calibration]:
    """Each cell's prediction from the calibration of `device` (if any) and the accuracy it assumed."""
    from ..plugins import create
    from ..teachers.model_dir import teacher_path

    calibration = Calibration.load(device, calibration_dir)
    plans = []
    for cell in cells:
        accuracy, source = expected_accuracy(cell, model_dir)
        reference = cell.reference_teacher
        # the runner measures specialization with the cell's teacher, or with the protocol's when its file is here
        specialization = cell.teacher != "none" or bool(
            reference and teacher_path(create("teacher", reference), model_dir).is_file()
        )
        prediction = (
            None
            if calibration.empty
            else predict_cell(cell, calibration, split_sizes, accuracy, specialization=specialization)
        )
        plans.append(CellPlan(cell, prediction, accuracy, source))
    return plans, calibration


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def plan_json(plan: CellPlan, flop_hours: float | None) -> dict[str, Any]:
    """`predicted_seconds` of one cell for `--dry-run --json`: from the calibration, else the FLOP estimate."""
    if plan.prediction is not None:
        return {
            **plan.prediction.as_dict(),
            "source": "calibration",
            "assumed_accuracy": {"clean": plan.accuracy[0], "robust": plan.accuracy[1], "from": plan.accuracy_from},
        }
    if flop_hours is None:
        return {"source": "none"}
    return {"total": round(flop_hours * 3600, 1), "source": "flops"}
