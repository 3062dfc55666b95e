"""The student's train-mode forward passes of one training step, in the official code's order, including the ones
whose outputs carry no gradient but still move the BatchNorm running statistics.

Several official loops run forwards that the loss does not need: ARD computes `basic_net(inputs)` for a CE term
whose weight is 0 at alpha = 1, AdaAD computes S(x) for a term weighted 1 - a = 0, IAD-I runs S(x) a second time
from `begin` on, robust_overfitting's PGD-AT re-runs S(x') to pick the best restart and S(x) after the optimizer
step for its logs. In train mode each such forward updates the running mean and variance, which are what the
evaluated (eval-mode) student uses. A method returns a `StudentForwards` plan from `Method.student_forwards`
(None: the engine's own order, S(x) then S(x'), only the passes the loss reads); `run_before_step` and
`run_after_step` execute it for the engine: the first occurrence of a pass the loss reads is the loss's pass
(with gradient), every other listed pass runs under `no_grad` and only updates the BatchNorm statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["StudentForwards", "STUDENT_INPUTS", "run_before_step", "run_after_step"]

# pass name -> which input it reads: S(x) or S(x')
STUDENT_INPUTS = {"s_nat": "x", "s_adv": "x_adv"}


@dataclass(frozen=True)
class StudentForwards:
    """The official sequence of the student's train-mode forwards after the training attack: `before_step` runs
    before the loss is formed and the optimizer steps, `after_step` right after the optimizer step (with the
    updated weights), each entry `s_nat` (S(x)) or `s_adv` (S(x'))."""

    before_step: tuple[str, ...]
    after_step: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = {p for p in (*self.before_step, *self.after_step) if p not in STUDENT_INPUTS}
        if unknown:
            raise ValueError(f"StudentForwards passes must be {sorted(STUDENT_INPUTS)}; got {sorted(unknown)}")


def run_before_step(
    student: nn.Module,
    plan: StudentForwards | None,
    needs: frozenset[str],
    x: Tensor,
    x_adv: Tensor | None,
    count: Callable[..., None],
) -> dict[str, Tensor]:
    """The loss's student outputs (`s_nat`, `s_adv` as in `needs`), computed in `plan`'s order with its extra
    no-grad passes; every forward is counted (`count(student_forward=, student_backward=)` per example)."""
    inputs = {"s_nat": x, "s_adv": x_adv}
    wanted = [p for p in ("s_nat", "s_adv") if p in needs]
    order = list(plan.before_step) if plan is not None else wanted
    order += [p for p in wanted if p not in order]  # a plan never drops a pass the loss reads
    outputs: dict[str, Tensor] = {}
    n = x.shape[0]
    for name in order:
        if name in wanted and name not in outputs:
            outputs[name] = student(inputs[name])
            count(student_forward=n, student_backward=n)
        else:
            with torch.no_grad():
                student(inputs[name])
            count(student_forward=n)
    return outputs


def run_after_step(
    student: nn.Module, plan: StudentForwards | None, x: Tensor, x_adv: Tensor | None, count: Callable[..., None]
) -> None:
    """The plan's `after_step` passes: no-grad train-mode forwards with the freshly updated weights."""
    if plan is None or not plan.after_step:
        return
    inputs = {"s_nat": x, "s_adv": x_adv}
    with torch.no_grad():
        for name in plan.after_step:
            student(inputs[name])
            count(student_forward=x.shape[0])
