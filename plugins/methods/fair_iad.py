"""`fair-iad`: Fair-IAD (Yue et al., NeurIPS 2023, NISP-official/Fair-ARD `Fair-IAD.py`): IAD-I with class weights
from per-class robustness during the attack (see `rkdbench_plugins.methods.fair_weights`).

Attack: IAD's (CE, uniform start, 10 steps of eps/4, student BN **train**; kappa counted in train mode). Loss: IAD-I
(tau = 1, batchmean, begin = 60, alpha_i = P_T(y | x')^0.1) with w_{y_i} on every per-example term, from `begin` on:
    alpha_kd * tau^2 * (1/B) sum_i w_i KL(T(x_i)/tau || S(x'_i)/tau)
  + alpha_kd * (1/B) sum_i w_i (1 - alpha_i) KL(S(x_i) || S(x'_i))
  + (1 - alpha_kd) * (1/B) sum_i w_i CE(S(x'_i), y_i)
and before `begin` only the first (KD) term, as the script. Unlike `iad` (CE on the clean S(x)), Fair-IAD's script
takes the CE on the adversarial output S(x') (it is off at the official alpha_kd = 1).
Nesterov SGD; the official schedule keeps ARD's single-decay bug (lr 0.01 from epoch 100 on): a recipe setting.
BatchNorm side effects (`bn_side_effects = True`): the script's train-mode forwards are S(x') (the attack's last
output, the loss pass), S(x) (`basic_net(inputs)`), then a detached S(x') (`basicop`) in every epoch, before and
after `begin`; IAD-I's second S(x) is not in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import Losses, Outputs, Progress, StudentForwards, Uniform, hookimpl, kl_div
from rkdbench_plugins.methods.fair_ard import CITATION
from rkdbench_plugins.methods.fair_weights import CLASS_WEIGHTS_DOC, ClassReweighting, FairParams
from rkdbench_plugins.methods.iad import IAD, IADParams, begin_epoch, reliability

__all__ = ["FairIAD", "FairIADParams"]

__doc__ = f"{__doc__}\n{CLASS_WEIGHTS_DOC}"


@dataclass(frozen=True)
class FairIADParams(FairParams, IADParams):
    pass


class FairIAD(ClassReweighting, IAD):
    name = "fair-iad"
    citation = CITATION
    Params = FairIADParams
    space = {**IAD.space, "fair_beta": Uniform(0.0, 4.0)}

    def student_forwards(self, progress: Progress) -> StudentForwards | None:
        return StudentForwards(("s_adv", "s_nat", "s_adv")) if self.params.bn_side_effects else None

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        s_adv, s_nat = out.require("s_adv"), out.require("s_nat")
        w = self.example_weights(y, s_adv.shape[1]).to(s_adv.dtype)
        active = progress.epoch >= begin_epoch(p.begin, p.begin_fraction, progress.epochs)
        alpha = reliability(out.require("t_adv"), y, p.beta, active)
        kd = (
            (w * kl_div(s_adv, F.softmax(out.require("t_nat") / tau, dim=1), "none", temperature=tau)).mean()
            * tau
            * tau
        )
        intro = (w * (1 - alpha) * kl_div(s_adv, F.softmax(s_nat, dim=1), "none")).mean()
        ce = (w * F.cross_entropy(s_adv, y, reduction="none")).mean()
        total = p.alpha_kd * kd + ((p.alpha_kd * intro + (1 - p.alpha_kd) * ce) if active else 0.0)
        return Losses(
            total=total,
            parts={
                "kd_adv": kd.detach(),
                "introspection": intro.detach(),
                "ce_adv": ce.detach(),
                "alpha_mean": alpha.detach().mean(),
            },
        )


@hookimpl
def register_methods(register):
    register(FairIAD)
