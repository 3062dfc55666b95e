"""`adaad`: Adaptive Adversarial Distillation (Huang et al., CVPR 2023, "Boosting Accuracy and Robustness of
Student Models via Adaptive Adversarial Distillation"), as in boyellow/AdaAD (AT_helper.adaad_inner_loss, main.py).

Attack: maximize the per-example KL(T(x') || S(x')) (sum over classes) with the teacher evaluated at the **same
perturbed point**, the input gradient flowing through **both** networks (teacher frozen, eval mode): the attack
needs {"s_adv", "t_adv"}. Gauss start 0.001*N(0, I), 10 steps of eps/4 (README: eps 8/255, step 2/255; the
argparse defaults 16/255 and 4/255 are the "larger radius" run), student BatchNorm in **eval** mode.
Loss (tau = 1):
    a * KL(T(x') || S(x'))  +  (1 - a) * KL(T(x) || S(x))
with a = `AdaAD_alpha` = 1.0 by default (adversarial term only; S(x) and T(x) are then not computed).
Reduction: `nn.KLDivLoss()` 'mean' (sum / (B*C)) on CIFAR-10, the official default here; the CIFAR-100 script
uses sum / B: set `kl_reduction = "batchmean"` there (the `cifar100-standard` suite does). The paper's
increasing-eps schedule (issue #2) is not implemented.

BatchNorm side effects (`bn_side_effects = True`, the official behaviour): after the (eval-mode) attack the
official step runs `net(inputs)` = S(x) and then S(x'), both in train mode, even at a = 1 where the clean term's
weight is 0: that clean forward carries no gradient but updates the student's BatchNorm running statistics.
The engine runs it before S(x') (no-grad, counted as one student forward per example); `False` skips it.
The official step also computes T(x) under `no_grad` at a = 1; it changes nothing (the teacher is in eval mode)
and is not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import (
    AttackSpec,
    Choice,
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

__all__ = ["AdaAD", "AdaADParams"]


@dataclass(frozen=True)
class AdaADParams:
    alpha: float = 1.0
    kl_reduction: ScalarReduction = "mean"
    bn_side_effects: bool = True


class AdaAD(Method):
    name = "adaad"
    citation = (
        "Huang et al., 'Boosting Accuracy and Robustness of Student Models via Adaptive Adversarial Distillation', "
        "CVPR 2023"
    )
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "t_adv"})
    Params = AdaADParams
    space = {"alpha": Uniform(0.5, 1.0), "kl_reduction": Choice("mean", "batchmean")}
    attack = AttackSpec(needs=frozenset({"s_adv", "t_adv"}), init="gauss", bn="eval", steps=10, step_size=0.25)

    def configure_needs(self, params: AdaADParams) -> frozenset[str]:
        return frozenset({"s_adv", "t_adv"} | ({"s_nat", "t_nat"} if params.alpha != 1 else set()))

    def student_forwards(self, progress: Progress) -> StudentForwards | None:
        return StudentForwards(("s_nat", "s_adv")) if self.params.bn_side_effects else None

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return kl_div(out.require("s_adv"), F.softmax(out.require("t_adv"), dim=1), "none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        adv = kl_div(out.require("s_adv"), F.softmax(out.require("t_adv"), dim=1), p.kl_reduction)
        total = p.alpha * adv
        parts = {"kl_adv": adv.detach()}
        if p.alpha != 1:
            nat = kl_div(out.require("s_nat"), F.softmax(out.require("t_nat"), dim=1), p.kl_reduction)
            total = total + (1 - p.alpha) * nat
            parts["kl_nat"] = nat.detach()
        return Losses(total=total, parts=parts)


@hookimpl
def register_methods(register):
    register(AdaAD)
