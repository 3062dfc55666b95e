"""`mart`: MART, Misclassification Aware adveRsarial Training (Wang et al., ICLR 2020), as in YisenWang/MART mart.py.

Attack: maximize CE(S(x'), y), Gauss start 0.001*N(0, I), 10 steps of 0.007 at eps 0.031 (step_size =
0.007/0.031 of eps), student BatchNorm in **eval** mode. Loss, with p = softmax:
    BCE  +  beta * (1/B) * sum_i KL(p(x_i) || p(x'_i)) * (1.0000001 - p_y(x_i))
    BCE  =  CE(S(x'), y)  -  mean_i log(1.0001 - max_{k != y} p_k(x'_i) + 1e-12)
The KL target p(x) and the weight p_y(x) are **not** detached (official). The official numerical guards are
kept: log(p(x') + 1e-12) inside the KL, 1.0000001 in the weight, +1e-12 in the BCE log.
beta is set per recipe as the official code does: 6 in the WideResNet script (train_wideresnet.py), the default
here, and 5 in the ResNet-18 script (train_resnet.py), which the CIFAR suites (`cifar10-standard`, `cifar10-short`,
`cifar100-standard`; ResNet-18 and MobileNetV2 students, the official code has no MobileNetV2 script) set with
`[suite.method_params.mart] beta = 5.0`. The digits suites keep the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkdbench import AttackSpec, LogUniform, Losses, Method, Outputs, Progress, hookimpl

__all__ = ["MART", "MARTParams"]


@dataclass(frozen=True)
class MARTParams:
    beta: float = 6.0


class MART(Method):
    name = "mart"
    citation = "Wang et al., 'Improving Adversarial Robustness Requires Revisiting Misclassified Examples', ICLR 2020"
    needs = frozenset({"s_nat", "s_adv"})
    Params = MARTParams
    space = {"beta": LogUniform(0.5, 20.0)}
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="gauss", bn="eval", steps=10, step_size=0.007 / 0.031)

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        s_adv, s_nat = out.require("s_adv"), out.require("s_nat")
        adv_probs = F.softmax(s_adv, dim=1)
        wrong = adv_probs.scatter(1, y[:, None], float("-inf")).amax(dim=1)  # max_{k != y} p_k(x')
        bce = F.cross_entropy(s_adv, y) - torch.log(1.0001 - wrong + 1e-12).mean()
        nat_probs = F.softmax(s_nat, dim=1)
        true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)
        kl = (torch.xlogy(nat_probs, nat_probs) - nat_probs * torch.log(adv_probs + 1e-12)).sum(dim=1)
        robust = (kl * (1.0000001 - true_probs)).sum() / s_adv.shape[0]
        total = bce + self.params.beta * robust
        return Losses(total=total, parts={"bce_adv": bce.detach(), "kl_weighted": robust.detach()})


@hookimpl
def register_methods(register):
    register(MART)
