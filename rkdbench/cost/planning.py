"""Wall-time predictions of a suite's cells, for `--dry-run`, the executors' order and the suite's ETA: from the
cell's own kind where it has run (the logged times of finished cells of the same method variant, student,
teachers and protocol on this device model: `rkdbench.cost.learned`), else from this device's calibration, else
from the same kind's runs on another device; each prediction says which. Nothing runs to make one.

A calibrated prediction is `rkdbench.cost.calibration.predict_cell` with the expected (clean, robust) accuracy that
sets AutoAttack's cost; before training that accuracy is unknown, so it is assumed to be the cell's teacher's (its
measured card, else its reported numbers; teacher-free cells take the protocol's teacher), else
`DEFAULT_ACCURACY`, and every prediction says which; a prediction from a doubtful calibration entry (its
repetitions disagreed) says so. A cell with no prediction falls back, for `--dry-run`, to the FLOP-based
GPU-hour estimate (`rkdbench.cost.estimate`), and for the order of a run to the passes its method declares
(`declared_passes`, scaled to seconds by the predicted cells).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..attacks.traits import CLEAN, legacy_specs, ranked_accuracy
from ..config import Cell, attack_entries
from ..tracking.schema import metric_key
from .calibration import Calibration, Prediction, predict_cell
from .learned import LearnedTime, LearnedTimes

__all__ = [
    "DEFAULT_ACCURACY",
    "SOURCES",
    "CellPlan",
    "expected_accuracy",
    "plan_cells",
    "declared_passes",
    "longest_first",
    "predicted_seconds",
    "format_seconds",
    "plan_json",
]

DEFAULT_ACCURACY = (0.8, 0.5)  # clean, AutoAttack: when no teacher card gives numbers


# where a prediction comes from, in the order they are preferred
SOURCES = ("learned", "calibration", "learned elsewhere", "none")


@dataclass(frozen=True)
class CellPlan:
    """One cell's prediction, its `source` (one of `SOURCES`) and `basis` (the runs, or the calibration file and
    any doubt), the accuracy a calibrated prediction assumed, and whether the cell is FINISHED in the store."""

    cell: Cell
    prediction: Prediction | None  # None: neither learned nor calibrated here
    accuracy: tuple[float, float]
    accuracy_from: str
    source: str = "calibration"
    basis: str = ""
    finished: bool = False


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
    split_sizes: tuple[int, int, int] | None,
    device: torch.device,
    calibration_dir: Path | None = None,
    learned: LearnedTimes | None = None,
) -> tuple[list[CellPlan], Calibration]:
    """Each cell's prediction, learned (`learned`: the store's finished cells) or calibrated for `device` (with the
    dataset's `split_sizes`; None: not calibrated), and the accuracy a calibrated one assumed."""
    from ..plugins import create
    from ..teachers.model_dir import teacher_path

    calibration = Calibration.load(device, calibration_dir)
    learned = learned or LearnedTimes()
    here, threads = calibration.identity["device"], calibration.identity["threads"]
    plans = []
    for cell in cells:
        finished = cell.key in learned.finished
        accuracy, source = expected_accuracy(cell, model_dir)
        time = learned.lookup(cell, here, threads)
        if time is not None:
            plans.append(_learned_plan(cell, time, "learned", accuracy, source, finished))
            continue
        reference = cell.reference_teacher
        # the runner measures specialization with the cell's teacher, or with the protocol's when its file is here
        specialization = cell.teacher != "none" or bool(
            reference and teacher_path(create("teacher", reference), model_dir).is_file()
        )
        prediction = (
            None
            if calibration.empty or split_sizes is None
            else predict_cell(cell, calibration, split_sizes, accuracy, specialization=specialization)
        )
        if prediction is not None:
            plans.append(
                CellPlan(cell, prediction, accuracy, source, "calibration", _doubts(prediction, calibration), finished)
            )
            continue
        time = learned.elsewhere(cell, here)
        if time is not None:
            plans.append(_learned_plan(cell, time, "learned elsewhere", accuracy, source, finished))
        else:
            plans.append(CellPlan(cell, None, accuracy, source, "none", "", finished))
    return plans, calibration


def _learned_plan(
    cell: Cell, time: LearnedTime, source: str, accuracy: tuple[float, float], accuracy_from: str, finished: bool
) -> CellPlan:
    prediction = Prediction(train=time.train, eval=time.eval, parts={})
    return CellPlan(cell, prediction, accuracy, accuracy_from, source, time.describe(), finished)


def _doubts(prediction: Prediction, calibration: Calibration) -> str:
    """The calibration file, and the widest spread of the doubtful entries the prediction used, if any."""
    doubtful = [calibration.spread[key]["spread"] for key in prediction.keys if calibration.doubtful(key)]
    where = f"calibration {calibration.path}"
    if not doubtful:
        return where
    return (
        f"{where}, doubtful: {len(doubtful)} of its entries had repetitions up to {max(doubtful):.0%} apart "
        f"(run `rkdbench calibrate` again when the machine is quiet)"
    )


def declared_passes(cell: Cell) -> float:
    """A cell's relative training cost per example from what its method declares, without running it: forward and
    backward passes of each network its training attack reads, per attack step, plus those its loss reads. No
    FLOPs (networks count alike): a tie-breaker for the order of cells nothing else predicts."""
    from ..contracts.build import method_of

    method = method_of(cell)
    attack = 0 if method.attack is None else method.attack.steps * 2 * len(method.attack.needs)
    return float(attack + 2 * len(method.needs))


def longest_first(plans: list[CellPlan]) -> list[int]:
    """The order to run the plans' cells in (indices): FINISHED cells first (skipped at once, in their order), then by
    predicted seconds, longest first, so that a suite's tail is short. A cell without a prediction is placed by its
    `declared_passes` times the predicted cells' median seconds per declared pass (by the passes alone when no
    cell is predicted); equal estimates keep the suite's order."""
    passes = [declared_passes(p.cell) for p in plans]
    ratios = [p.prediction.total / w for p, w in zip(plans, passes) if p.prediction is not None and w > 0]
    scale = statistics.median(ratios) if ratios else 1.0

    def estimate(i: int) -> float:
        prediction = plans[i].prediction
        return prediction.total if prediction is not None else passes[i] * scale

    return sorted(range(len(plans)), key=lambda i: (0.0, 0.0) if plans[i].finished else (1.0, -estimate(i)))


def predicted_seconds(plans: list[CellPlan]) -> dict[str, float | None]:
    """Cell key -> predicted wall seconds (0 for a FINISHED cell: it is skipped; None: no prediction), for the
    suite status line's ETA."""
    return {p.cell.key: 0.0 if p.finished else (None if p.prediction is None else p.prediction.total) for p in plans}


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def plan_json(plan: CellPlan, flop_hours: float | None) -> dict[str, Any]:
    """`predicted_seconds` of one cell for `--dry-run --json`: learned or calibrated (`source`, `basis`), else the
    FLOP estimate."""
    if plan.prediction is not None:
        data = {**plan.prediction.as_dict(), "source": plan.source, "basis": plan.basis}
        if plan.source == "calibration":
            data["assumed_accuracy"] = {
                "clean": plan.accuracy[0],
                "robust": plan.accuracy[1],
                "from": plan.accuracy_from,
            }
        else:
            del data["parts"]  # a learned time is the cells' two logged phases, not a sum of modelled parts
        return data
    if flop_hours is None:
        return {"source": "none"}
    return {"total": round(flop_hours * 3600, 1), "source": "flops"}
