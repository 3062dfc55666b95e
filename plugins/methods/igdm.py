"""`igdm`: the Indirect Gradient Distillation Module (Lee, Cho, Kim, ICLR 2025, arXiv 2312.03286), as the AdaAD+IGDM
of the author codes (Xavaitron/VLM_Distillation `ICLR_IGDM/adaad_IGDM_cifar100.py`, HongsinLee/saad `igdm.py`);
`igdm_loss` is the module on its own, also used by `saad`.

Module: with delta = x' - x from the base method's attack, x+ = x' and the mirror point x- = x - delta (unclamped),
    L_IGDM = batchmean KL( softmax(T(x+) - T(x-)) || softmax(S(x+) - S(x-)) )        (teacher difference detached)
the logit differences approximate 2*J*delta, so the student's input gradient is matched indirectly. Total:
    L = L_base + alpha * (e / E_ref) * L_IGDM,      e = 1..E the epoch (a linear ramp)
Base (AdaAD's attack: maximize KL(T(x') || S(x')) summed, Gauss start, student BN eval, teacher forward+backward
every step): L_base = batchmean KL(T(x') || S(x')) + nat_weight * batchmean KL(T(x) || S(x)), nat_weight = 0.
Official defaults: alpha = 1 (CIFAR-10; the CIFAR-100 scripts use 20, SAAD's comment 10), beta = gamma = 1
(x+ = x', x- = x - delta; other values are not implemented).
[I] `ref_epochs` = E_ref: None = the run's length (the follow-up code); the official scripts hard-code 200
(AdaAD+IGDM) or 300 (RSLAD+IGDM), so a shorter run never reaches the full weight there.
BatchNorm side effect: the official code runs S(x) in train mode even though its weight is 0, which updates the
BN running statistics; `clean_forward = True` (official) reproduces it (one extra student forward per step).
The separate S(x+) forward of the official code (same outputs as S(x'), a second BN update) is not reproduced:
S(x+) is S(x'). A natural term needs T(x) too: with nat_weight = 0 it is not computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import (
    AttackSpec,
    Choice,
    KLReduction,
    LogUniform,
    Losses,
    Method,
    Outputs,
    Progress,
    ScalarReduction,
    hookimpl,
    kl_div,
    reduce_per_example,
)

__all__ = ["IGDM", "IGDMParams", "igdm_loss", "igdm_per_example", "igdm_ramp"]


@dataclass(frozen=True)
class IGDMParams:
    alpha: float = 1.0
    ref_epochs: int | None = None  # [I] None = the run length; official scripts hard-code 200 (300 for RSLAD+IGDM)
    nat_weight: float = 0.0
    kl_reduction: ScalarReduction = "batchmean"
    clean_forward: bool = True  # official: S(x) runs in train mode (weight 0) and updates BN statistics


def igdm_per_example(s_adv: Tensor, s_mir: Tensor, t_adv: Tensor, t_mir: Tensor) -> Tensor:
    """Per-example KL(softmax(T(x+) - T(x-)) || softmax(S(x+) - S(x-))), the teacher difference detached."""
    target = F.softmax((t_adv - t_mir).detach(), dim=1)
    return kl_div(s_adv - s_mir, target, "none")


def igdm_loss(
    s_adv: Tensor, s_mir: Tensor, t_adv: Tensor, t_mir: Tensor, reduction: KLReduction = "batchmean"
) -> Tensor:
    """The IGDM module: KL between the teacher's and the student's logit differences across x+ and x-."""
    return reduce_per_example(igdm_per_example(s_adv, s_mir, t_adv, t_mir), reduction, s_adv.shape[1])


def igdm_ramp(progress: Progress, ref_epochs: int | None) -> float:
    """e / E_ref with e counted from 1 (the official linear ramp); E_ref = the run length when None."""
    return (progress.epoch + 1) / (ref_epochs if ref_epochs is not None else progress.epochs)


class IGDM(Method):
    name = "igdm"
    citation = "Lee, Cho, Kim, IGDM, ICLR 2025 (arXiv 2312.03286)"
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "t_adv", "s_mir", "t_mir"})
    Params = IGDMParams
    space = {"alpha": LogUniform(0.1, 30.0), "kl_reduction": Choice("batchmean", "mean")}
    attack = AttackSpec(needs=frozenset({"s_adv", "t_adv"}), init="gauss", bn="eval", steps=10, step_size=0.25)

    def configure_needs(self, params: IGDMParams) -> frozenset[str]:
        extra = set()
        if params.clean_forward or params.nat_weight != 0:
            extra.add("s_nat")
        if params.nat_weight != 0:
            extra.add("t_nat")
        return type(self).needs | extra

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return kl_div(out.require("s_adv"), F.softmax(out.require("t_adv"), dim=1), "none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        s_adv, t_adv = out.require("s_adv"), out.require("t_adv")
        adv = kl_div(s_adv, F.softmax(t_adv.detach(), dim=1), p.kl_reduction)
        module = igdm_loss(s_adv, out.require("s_mir"), t_adv, out.require("t_mir"), p.kl_reduction)
        total = adv + p.alpha * igdm_ramp(progress, p.ref_epochs) * module
        parts = {"kl_adv": adv.detach(), "igdm": module.detach()}
        if p.nat_weight != 0:
            nat = kl_div(out.require("s_nat"), F.softmax(out.require("t_nat").detach(), dim=1), p.kl_reduction)
            total = total + p.nat_weight * nat
            parts["kl_nat"] = nat.detach()
        return Losses(total=total, parts=parts)


@hookimpl
def register_methods(register):
    register(IGDM)
