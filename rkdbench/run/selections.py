"""A trained cell's test-set measurements: each selection the protocol asks for (`last`, `best-val`, `swa`)
evaluated with the protocol's attacks, plus worst-class and teacher-transfer metrics, and the student's
specialization against a reference teacher. Reads the checkpoints named by the training outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..attacks.base import preserved_rng
from ..config import Cell
from ..evaluation.evaluate import Evaluation, evaluate, test_points
from ..evaluation.selection_metrics import per_class_frame, selection_metrics
from ..evaluation.transfer import TeacherProbe
from ..teachers.load import load_teacher
from ..teachers.model_dir import teacher_path
from ..tracking import schema
from ..training.checkpoint import load_verified
from ..training.engine import TrainOutcome
from .options import RunOptions
from .prepare import teacher_card

__all__ = ["evaluate_selections", "reference_teacher", "specialization"]


def evaluate_selections(
    student: nn.Module,
    trained: TrainOutcome,
    cell: Cell,
    splits,
    device,
    workdir: Path,
    probe: TeacherProbe | None = None,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, list[str]]]:
    """Evaluate `last` (the `student` as trained) and (if asked) `best-val` and `swa` (the weight-averaged
    student); identical weights are evaluated once. Each selection's attack chunks are saved in
    `<workdir>/eval-<selection>/`, so a cell killed mid-evaluation resumes where it stopped. Each selection also
    gets worst-class and (with a teacher `probe`) transferability metrics; the per-class counts are written to
    `<workdir>/per_class.csv`."""
    protocol = cell.protocol
    x, y = test_points(protocol, splits.test)
    state = {selection: workdir / f"eval-{selection}" for selection in schema.SELECTION_SPLITS}

    def evaluate_weights(weights: dict, selection: str) -> Evaluation:
        last_state = {k: v.clone() for k, v in student.state_dict().items()}
        student.load_state_dict(weights)
        try:
            return evaluate(student, protocol, x, y, state_dir=state[selection], probe=probe)
        finally:
            student.load_state_dict(last_state)  # later diagnostics describe the last checkpoint

    results: dict[str, Evaluation] = {"last": evaluate(student, protocol, x, y, state_dir=state["last"], probe=probe)}
    last_epoch = protocol.train.epochs - 1
    metrics = schema.with_split(schema.selection_split("last"), results["last"].metrics)
    metrics[schema.TEST_N_EXAMPLES] = float(len(y))
    metrics[schema.TEST_BATCH_SIZE] = float(results["last"].batch_size)  # chosen from memory when the protocol says 0
    if "best-val" in protocol.eval.selections:
        best = load_verified(trained.best_path, map_location=device)
        if int(best["epoch"]) == last_epoch:
            results["best-val"] = results["last"]
        else:
            results["best-val"] = evaluate_weights(best["model"], "best-val")
        metrics.update(schema.with_split(schema.selection_split("best-val"), results["best-val"].metrics))
        metrics[schema.BEST_VAL_EPOCH] = float(best["epoch"])
    if "swa" in protocol.eval.selections:
        if trained.swa_path is None:
            raise ValueError(
                f"eval.selections asks for 'swa' but training averaged no weights (train.swa_start "
                f"{protocol.train.swa_start}, {last_epoch + 1} epochs)"
            )
        averaged = load_verified(trained.swa_path, map_location=device)
        results["swa"] = evaluate_weights(averaged["model"], "swa")
        metrics.update(schema.with_split(schema.selection_split("swa"), results["swa"].metrics))
        metrics[schema.SWA_N_AVERAGED] = float(averaged["count"])
    for selection, evaluation in results.items():
        metrics.update(schema.with_split(schema.selection_split(selection), selection_metrics(evaluation, y)))
    per_class_frame(results, y).to_csv(workdir / "per_class.csv", index=False)
    frames = []
    for selection, evaluation in results.items():
        frame = pd.DataFrame({k: v.numpy() for k, v in evaluation.per_example.items()})
        frame.insert(0, "y", y.cpu().numpy())
        frame.insert(0, "index", range(len(frame)))
        frame.insert(0, "selection", selection)
        frames.append(frame)
    flags = {selection: evaluation.flags for selection, evaluation in results.items()}
    return metrics, pd.concat(frames, ignore_index=True), flags


def reference_teacher(cell: Cell, teachers: dict, options: RunOptions, device) -> tuple[Any, str]:
    """The teacher the diagnostics compare the student with: the cell's (primary) teacher, or, for teacher-free
    methods, the protocol's teacher when its file is in the model dir; else (None, why not)."""
    teacher = next(iter(teachers.values()), None)
    if teacher is not None:
        return teacher, ""
    reference = cell.protocol.header.teacher
    if not reference:
        return None, f"method {cell.method!r} has no teacher and protocol {cell.protocol.name!r} names none"
    card = teacher_card(reference)
    path = teacher_path(card, options.model_dir)
    if not path.is_file():
        return None, f"method {cell.method!r} has no teacher and the protocol's teacher {reference!r} is not at {path}"
    return load_teacher(card, options.model_dir, device), ""


def specialization(cell: Cell, student, teacher, splits) -> dict[str, float]:
    """Teacher-student neuron correlation of the final student against its reference teacher (`reference_teacher`),
    on clean test points and the student's PGD points."""
    from ..diagnostics.specialization import specialization_report

    protocol = cell.protocol
    if teacher is None:
        return {}
    x, y = test_points(protocol, splits.test)
    student.eval()
    with preserved_rng():
        return specialization_report(
            teacher, student, x, y, protocol.threat.eps, protocol.threat.norm, seed=protocol.eval.seed
        )
