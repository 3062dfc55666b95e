"""Predictions from the calibration: a cell's training and evaluation seconds (AutoAttack's later stages priced
on the points that stay robust after its first stage, from the expected clean and robust accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config import Cell, Protocol
from .store import Calibration, Linear, attack_key, batch_counts, per_point_key, train_key


@dataclass(frozen=True)
class Prediction:
    """Predicted seconds of one cell: training (steps, validation, checkpoints) and evaluation (every attack for
    every selection, specialization, diagnostics)."""

    train: float
    eval: float
    parts: dict[str, float]
    keys: tuple[str, ...] = ()  # the calibration entries it was computed from

    @property
    def total(self) -> float:
        return self.train + self.eval

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": round(self.train, 2),
            "eval": round(self.eval, 2),
            "total": round(self.total, 2),
            "parts": {k: round(v, 2) for k, v in self.parts.items()},
        }


def attack_seconds(entry: dict[str, Any], n: int, chunk_size: int, clean: float, robust: float) -> float:
    """An attack over `n` points cut into chunks: AutoAttack-like entries (with a `first` stage) pay the first stage
    on the `clean` fraction and the rest on the `robust` fraction, each in batches of the points left; others pay
    their full course on every point in fixed batches."""
    batch = int(entry["batch_size"])
    full = Linear(**entry["all"])
    first = Linear(**entry["first"]) if "first" in entry else None
    total = 0.0
    for m in batch_counts(n, chunk_size or n or 1):
        if first is None:
            total += sum(full(b) for b in batch_counts(m, batch))
        else:
            rest = Linear(max(full.fixed - first.fixed, 0.0), max(full.per_point - first.per_point, 0.0))
            total += sum(first(b) for b in batch_counts(m * clean, batch))
            total += sum(rest(b) for b in batch_counts(m * robust, batch))
    return total


def predict_cell(
    cell: Cell,
    calibration: Calibration,
    split_sizes: tuple[int, int, int],
    accuracy: tuple[float, float],
    *,
    specialization: bool = True,
    evaluations: int | None = None,
) -> Prediction | None:
    """The cell's wall time from `calibration`, or None when a measurement it needs is missing. `accuracy` is the
    expected (clean, robust) accuracy of the trained student (it sets AutoAttack's cost); `specialization` says
    whether the runner will measure it (a teacher is available); `evaluations`: how many checkpoints are
    evaluated (default: one per selection; best-val is evaluated apart unless it is the last epoch)."""
    timing = calibration.train.get(train_key(cell))
    protocol = cell.protocol
    cfg, train = protocol.eval, protocol.train
    if timing is None:
        return None
    keys = [train_key(cell)]
    n_train, n_val, n_test = split_sizes
    epochs, batch = train.epochs, train.batch_size
    parts = {
        "train.steps": epochs * n_train / batch * timing["step"],  # a last partial batch costs its share
        "train.validation": epochs * n_val * timing["val_point"],
        "train.checkpoints": epochs * timing["epoch_rest"],
    }
    n = cfg.n_examples or n_test
    selections = evaluations or len(cfg.selections)
    for label in cfg.attacks:
        found = _attack_entry(calibration, protocol, label, cell.student)
        if found is None:
            return None
        key, entry = found
        keys.append(key)
        parts[f"eval.{label}"] = selections * attack_seconds(entry, n, cfg.chunk_size, *accuracy)
    if cfg.diagnostics:
        key = per_point_key("diagnostics", protocol, cell.student)
        per_point = calibration.per_point.get(key)
        if per_point is None:
            return None
        keys.append(key)
        parts["eval.diagnostics"] = n * per_point
    reference = cell.reference_teacher
    if specialization and reference:
        key = per_point_key("specialization", protocol, cell.student, reference)
        per_point = calibration.per_point.get(key)
        if per_point is None:
            return None
        keys.append(key)
        parts["eval.specialization"] = n * per_point
    train_total = sum(v for k, v in parts.items() if k.startswith("train."))
    return Prediction(train=train_total, eval=sum(parts.values()) - train_total, parts=parts, keys=tuple(keys))


def _attack_entry(
    calibration: Calibration, protocol: Protocol, label: str, student: str
) -> tuple[str, dict[str, Any]] | None:
    """The key and entry measured for this attack and student at whichever batch size calibration used (the
    protocol's, or the one chosen from free memory there)."""
    configured = protocol.eval.batch_size
    sizes = [configured] if configured else sorted({int(e["batch_size"]) for e in calibration.attack.values()})
    for size in sizes:
        key = attack_key(protocol, label, student, size)
        if key in calibration.attack:
            return key, calibration.attack[key]
    return None
