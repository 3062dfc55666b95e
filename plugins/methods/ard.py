"""`ard`: Adversarially Robust Distillation (Goldblum et al., AAAI 2020), as in
goldblum/AdversariallyRobustDistillation.

Attack: maximize CE(S(x'), y) against hard labels (the teacher is not involved), uniform start, 10 steps of
eps/4, student BatchNorm in **train** mode. Loss:
    alpha * tau^2 * KL(T(x)/tau || S(x')/tau)  +  (1 - alpha) * CE(S(x), y)
with the teacher on the **clean** input and `nn.KLDivLoss()`'s default `mean` reduction (sum / (B*C)).
Official defaults: tau = 30, alpha = 1 (the CE term is off), so the per-example weight is tau^2/C.
`kl_reduction = "batchmean"` and `temperature = 1` give the re-implementations in later papers (IAD's ARD.py).

BatchNorm side effects (`bn_side_effects = True`, the official behaviour): after the attack the official step
runs, in train mode, S(x') (the loss's pass) and then `basic_net(inputs)` = S(x) for the CE term, even at
alpha = 1 where its weight is 0: that clean forward carries no gradient but updates the student's BatchNorm
running statistics. The engine runs it (no-grad, counted as one student forward per example); `False` skips
it (the loss's passes only, S(x) before S(x') when alpha < 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import (
    AttackSpec,
    Choice,
    LogUniform,
    Losses,
    Method,
    Outputs,
    Progress,
    ScalarReduction,
    StudentForwards,
    Uniform,
    hookimpl,
    kl_div,
)

__all__ = ["ARD", "ARDParams"]


@dataclass(frozen=True)
class ARDParams:
    temperature: float = 30.0
    alpha: float = 1.0
    kl_reduction: ScalarReduction = "mean"
    bn_side_effects: bool = True


class ARD(Method):
    name = "ard"
    citation = "Goldblum et al., AAAI 2020"
    teacher_roles = ("robust",)
    Params = ARDParams
    space = {
        "temperature": LogUniform(1.0, 50.0),
        "alpha": Uniform(0.5, 1.0),
        "kl_reduction": Choice("mean", "batchmean"),
    }
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="uniform", bn="train", steps=10, step_size=0.25)

    def configure_needs(self, params: ARDParams) -> frozenset[str]:
        return frozenset({"s_adv", "t_nat"} | ({"s_nat"} if params.alpha < 1 else set()))

    def student_forwards(self, progress: Progress) -> StudentForwards | None:
        return StudentForwards(("s_adv", "s_nat")) if self.params.bn_side_effects else None

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        target = F.softmax(out.require("t_nat") / tau, dim=1)
        kd = kl_div(out.require("s_adv"), target, p.kl_reduction, temperature=tau) * tau * tau
        total = p.alpha * kd
        parts = {"kd_adv": kd.detach()}
        if p.alpha < 1:
            ce = F.cross_entropy(out.require("s_nat"), y)
            total = total + (1 - p.alpha) * ce
            parts["ce_nat"] = ce.detach()
        return Losses(total=total, parts=parts)


@hookimpl
def register_methods(register):
    register(ARD)
