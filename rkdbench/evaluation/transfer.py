"""Adversarial transferability from student to teacher (METHODS-2.md §2, the "harness TAS"): of the test points
whose adversarial example, crafted against the student alone, fools the student, the fraction whose adversarial
example also fools the teacher.

`TeacherProbe` rides along the evaluation: for every `[eval.attacks]` entry and chunk it predicts, on the points
the attack returned, with the student (eval mode) and with the teacher, and the evaluation stores both
predictions per example (`<label>.student_pred`, `<label>.teacher_pred` in `per_example.parquet`, next to the
label `y` and the teacher's clean correctness `teacher_clean`), so that other definitions can be recomputed; it
costs two forwards per point and no extra attack. `transfer_metrics` turns them into, per attack label:

* `transferability.<label>` (TAS) = #{not s1 and not t1} / #{not s1},
* `transferability_clean.<label>` = the same restricted to the points both classify correctly when clean,
* `teacher_adv_acc.<label>` = the teacher's accuracy on the student's adversarial points,

with s0 = [S(x) = y], s1 = [S(x') = y], t0 = [T(x) = y], t1 = [T(x') = y]. A ratio with an empty denominator is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from ..attacks.base import predict
from ..tracking.schema import MEASURE_TAS, MEASURE_TAS_CLEAN, MEASURE_TEACHER_ADV_ACC, attack_measure_key

__all__ = ["TeacherProbe", "transfer_metrics", "PRED_COLUMNS"]

PRED_COLUMNS = ("student_pred", "teacher_pred")


@dataclass
class TeacherProbe:
    """Predictions of the evaluated model and of `teacher` on an attack's adversarial points; `identity` (the
    teacher's weights digest) keys the evaluation's saved chunks, so a chunk is only reused for the same teacher."""

    teacher: nn.Module
    batch_size: int = 500
    identity: str = field(init=False)

    def __post_init__(self) -> None:
        from .evaluate import weights_digest

        self.teacher.eval()
        self.identity = weights_digest(self.teacher)

    def clean(self, x: Tensor, y: Tensor) -> Tensor:
        """t0 = [T(x) = y] per example (on the CPU)."""
        return (predict(self.teacher, x, self.batch_size) == y).cpu()

    def __call__(self, model: nn.Module, x_adv: Tensor, y: Tensor) -> dict[str, Tensor]:
        model.eval()
        return {
            "student_pred": predict(model, x_adv, self.batch_size).cpu(),
            "teacher_pred": predict(self.teacher, x_adv, self.batch_size).cpu(),
        }


def _ratio(numerator: Tensor, denominator: Tensor) -> float:
    count = int(denominator.sum())
    return float(numerator.sum()) / count if count else float("nan")


def transfer_metrics(per_example: dict[str, Tensor], y: Tensor, labels: list[str]) -> dict[str, float]:
    """TAS, TAS on clean-correct points and the teacher's accuracy on the student's adversarial points, per attack
    label whose `<label>.student_pred` / `<label>.teacher_pred` the probe stored (see the module docstring)."""
    if "teacher_clean" not in per_example:  # evaluated without a teacher probe
        return {}
    y = y.cpu()
    s0, t0 = per_example["clean"].bool(), per_example["teacher_clean"].bool()
    metrics: dict[str, float] = {}
    for label in labels:
        if f"{label}.teacher_pred" not in per_example:
            continue
        s1 = per_example[f"{label}.student_pred"] == y
        t1 = per_example[f"{label}.teacher_pred"] == y
        both_fooled = ~s1 & ~t1
        metrics[attack_measure_key(MEASURE_TAS, label)] = _ratio(both_fooled, ~s1)
        metrics[attack_measure_key(MEASURE_TAS_CLEAN, label)] = _ratio(both_fooled & s0 & t0, ~s1 & s0 & t0)
        teacher_adv_acc = float(t1.float().mean()) if len(y) else float("nan")
        metrics[attack_measure_key(MEASURE_TEACHER_ADV_ACC, label)] = teacher_adv_acc
    return metrics
