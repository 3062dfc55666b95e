"""`kd`: Hinton knowledge distillation on clean inputs (Hinton, Vinyals, Dean, 2015), the non-adversarial KD baseline.

No attack. Loss:
    alpha * tau^2 * KL(T(x)/tau || S(x)/tau)  +  (1 - alpha) * CE(S(x), y)
with the protocol's (robust) teacher on the clean input and the true (`batchmean`) KL.
Defaults tau = 4, alpha = 0.9, `batchmean`: the usual CIFAR KD setting (e.g. CRD's / RepDistiller's KD baseline
uses tau = 4); these are this harness's choice, not an official robust-KD setting (METHODS.md has no KD section).
ARD issue #6 ("KD on clean images only") is the reason the baseline exists: it is not robust.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import Choice, LogUniform, Losses, Method, Outputs, Progress, ScalarReduction, Uniform, hookimpl, kl_div

__all__ = ["KD", "KDParams"]


@dataclass(frozen=True)
class KDParams:
    temperature: float = 4.0
    alpha: float = 0.9
    kl_reduction: ScalarReduction = "batchmean"


class KD(Method):
    name = "kd"
    citation = "Hinton, Vinyals, Dean, 'Distilling the Knowledge in a Neural Network', NIPS DL Workshop 2015"
    teacher_roles = ("robust",)
    needs = frozenset({"s_nat", "t_nat"})
    Params = KDParams
    space = {
        "temperature": LogUniform(1.0, 20.0),
        "alpha": Uniform(0.5, 1.0),
        "kl_reduction": Choice("batchmean", "mean"),
    }
    attack = None

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        s_nat = out.require("s_nat")
        kd = kl_div(s_nat, F.softmax(out.require("t_nat") / tau, dim=1), p.kl_reduction, temperature=tau) * tau * tau
        ce = F.cross_entropy(s_nat, y)
        total = p.alpha * kd + (1 - p.alpha) * ce
        return Losses(total=total, parts={"kd_nat": kd.detach(), "ce_nat": ce.detach()})


@hookimpl
def register_methods(register):
    register(KD)
