"""`fair-ard`: Fair-ARD (Yue et al., NeurIPS 2023, NISP-official/Fair-ARD `Fair-ARD.py`): ARD with class weights from
per-class robustness during the attack (see `rkdbench_plugins.methods.fair_weights`).

Attack: ARD's (CE against hard labels, uniform start, 10 steps of eps/4, student BN **train**; kappa is counted in
that mode). Loss, with w_{y_i} the class weights of the previous epoch:
    (1/B) sum_i w_{y_i} * alpha * tau^2 * KL(T(x_i)/tau || S(x'_i)/tau) / C
      +  (1 - alpha) * (1/B) sum_i w_{y_i} CE(S(x_i), y_i)
(`nn.KLDivLoss()`'s mean: the /C), tau = 30, alpha = 1, fair_beta = 2, clip (5/6, 5/2), Nesterov SGD.
The official schedule keeps ARD's single-decay bug (lr 0.01 from epoch 100 on): that belongs to the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import Losses, Outputs, Progress, Uniform, hookimpl, kl_div
from rkdbench_plugins.methods.ard import ARD, ARDParams
from rkdbench_plugins.methods.fair_weights import CLASS_WEIGHTS_DOC, ClassReweighting, FairParams

__all__ = ["FairARD", "FairARDParams"]

__doc__ = f"{__doc__}\n{CLASS_WEIGHTS_DOC}"

CITATION = (
    "Yue, Mou, Wang, Zhao, 'Revisiting Adversarial Robustness Distillation from the Perspective of Robust "
    "Fairness', NeurIPS 2023"
)


@dataclass(frozen=True)
class FairARDParams(FairParams, ARDParams):
    pass


class FairARD(ClassReweighting, ARD):
    name = "fair-ard"
    citation = CITATION
    Params = FairARDParams
    space = {**ARD.space, "fair_beta": Uniform(0.0, 4.0)}

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        s_adv = out.require("s_adv")
        num_classes = s_adv.shape[1]
        w = self.example_weights(y, num_classes).to(s_adv.dtype)
        per_kl = kl_div(s_adv, F.softmax(out.require("t_nat") / tau, dim=1), "none", temperature=tau)
        kd = (w * per_kl).sum() / (s_adv.shape[0] * num_classes) * tau * tau
        if p.kl_reduction == "batchmean":
            kd = kd * num_classes
        total = p.alpha * kd
        parts = {"kd_adv": kd.detach()}
        if p.alpha < 1:
            ce = (w * F.cross_entropy(out.require("s_nat"), y, reduction="none")).mean()
            total = total + (1 - p.alpha) * ce
            parts["ce_nat"] = ce.detach()
        return Losses(total=total, parts=parts)


@hookimpl
def register_methods(register):
    register(FairARD)
