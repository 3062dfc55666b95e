"""`rslad`: Robust Soft Label Adversarial Distillation (Zi et al., ICCV 2021), as in zibojia/RSLAD.

The teacher's clean soft labels T(x) replace hard labels everywhere. Attack: maximize KL(T(x) || S(x'))
(sum over classes per example), Gauss start 0.001*N(0, I), 10 steps of eps/4, student BatchNorm in
**eval** mode. Loss:
    5/6 * KL(T(x) || S(x'))  +  1/6 * KL(T(x) || S(x))        (tau = 1)
with the official element-wise form  -log p_S * p_T + log(p_T + 1e-5) * p_T  averaged over B*C
(`kl_reduction = "mean"`, i.e. KL/C; the 1e-5 only shifts the value, not the gradient). The CIFAR-100
scripts multiply both terms by 10: `loss_scale = 10` in those recipes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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
    Uniform,
    hookimpl,
    kl_div,
)

__all__ = ["RSLAD", "RSLADParams", "rslad_kl"]


@dataclass(frozen=True)
class RSLADParams:
    adv_weight: float = 5 / 6
    nat_weight: float = 1 / 6
    temperature: float = 1.0
    kl_reduction: ScalarReduction = "mean"  # official /C form with the 1e-5 target offset; "batchmean" = true KL
    loss_scale: float = 1.0


def rslad_kl(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """RSLAD's element-wise KL: mean over B*C of (-log p_S * p_T + log(p_T + 1e-5) * p_T)."""
    log_p_s = F.log_softmax(student_logits, dim=1)
    return torch.mean(-log_p_s * teacher_probs + torch.log(teacher_probs + 1e-5) * teacher_probs)


class RSLAD(Method):
    name = "rslad"
    citation = "Zi et al., ICCV 2021"
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "s_nat", "t_nat"})
    Params = RSLADParams
    space = {
        "adv_weight": Uniform(0.5, 1.0),
        "nat_weight": Uniform(0.0, 0.5),
        "temperature": LogUniform(0.5, 10.0),
        "kl_reduction": Choice("mean", "batchmean"),
    }
    attack = AttackSpec(needs=frozenset({"s_adv", "t_nat"}), init="gauss", bn="eval", steps=10, step_size=0.25)

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return kl_div(out.require("s_adv"), F.softmax(out.require("t_nat"), dim=1), "none")

    def _kl(self, student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
        if self.params.kl_reduction == "mean":
            return rslad_kl(student_logits / self.params.temperature, teacher_probs)
        return kl_div(student_logits, teacher_probs, self.params.kl_reduction, self.params.temperature)

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        target = F.softmax(out.require("t_nat") / p.temperature, dim=1)
        adv = self._kl(out.require("s_adv"), target)
        nat = self._kl(out.require("s_nat"), target)
        total = p.loss_scale * (p.adv_weight * adv + p.nat_weight * nat)
        return Losses(total=total, parts={"kl_adv": adv.detach(), "kl_nat": nat.detach()})


@hookimpl
def register_methods(register):
    register(RSLAD)
