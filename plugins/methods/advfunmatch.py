"""`advfunmatch`: Adversarial Function Matching (Wu, Gao, Zhou, Wang, arXiv 2305.14700), METHODS.md §10b.

No reachable code (gitee); this is the implementable reading [I] of the abstract, consistent with FunMatch
(Beyer et al., CVPR 2022): "consistent teaching", teacher and student always see the **identical** input.
* x~ = strong augmentation of x, the same x~ for both networks: `extra_augment = "strong"`, a batched
  augmentation applied by the engine after the protocol's crop/flip. It is a **documented stand-in for the
  paper's AutoAugment CIFAR policy** (the harness augments whole batches on the device; it does not run
  AutoAugment's per-image PIL policy).
* Attack: maximize the per-example KL(T(x~+d) || S(x~+d)) (sum over classes), the input gradient flowing
  through **both** networks (teacher frozen, eval mode): the attack needs {"s_adv", "t_adv"}. 10 steps of
  eps/4, **uniform** start [I], student BatchNorm in eval mode [I]. The same objective as AdaAD (a = 1); the
  difference is the uniform start and the consistent strong augmentation.
* Loss: KL(T(x~+d*) || S(x~+d*)), `batchmean`, no label term.

Uncertain choices exposed as parameters (paper text not found [U]): `temperature` (tau = 1; applied to both
networks in the attack and the loss, the loss scaled by tau^2), `kl_reduction` ("batchmean"), and
`kl_direction` ("teacher||student" = KL(p_T || p_S), the FunMatch direction; "student||teacher" = KL(p_S || p_T)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    hookimpl,
    kl_div,
)

__all__ = ["AdvFunMatch", "AdvFunMatchParams", "function_kl"]

Direction = Literal["teacher||student", "student||teacher"]


@dataclass(frozen=True)
class AdvFunMatchParams:
    temperature: float = 1.0
    kl_reduction: ScalarReduction = "batchmean"
    kl_direction: Direction = "teacher||student"


def function_kl(
    s_logits: Tensor, t_logits: Tensor, reduction: ScalarReduction, tau: float, direction: Direction
) -> Tensor:
    """KL(p_T || p_S) ("teacher||student") or KL(p_S || p_T) ("student||teacher") at temperature tau."""
    if direction == "teacher||student":
        return kl_div(s_logits, F.softmax(t_logits / tau, dim=1), reduction, temperature=tau)
    return kl_div(t_logits, F.softmax(s_logits / tau, dim=1), reduction, temperature=tau)


class AdvFunMatch(Method):
    name = "advfunmatch"
    citation = (
        "Wu, Gao, Zhou, Wang, 'AdvFunMatch: When Consistent Teaching Meets Adversarial Robustness', arXiv 2305.14700"
    )
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "t_adv"})
    extra_augment = "strong"
    Params = AdvFunMatchParams
    space = {
        "temperature": LogUniform(0.5, 10.0),
        "kl_reduction": Choice("batchmean", "mean"),
        "kl_direction": Choice("teacher||student", "student||teacher"),
    }
    attack = AttackSpec(needs=frozenset({"s_adv", "t_adv"}), init="uniform", bn="eval", steps=10, step_size=0.25)

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        p = self.params
        return function_kl(out.require("s_adv"), out.require("t_adv"), "none", p.temperature, p.kl_direction)

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        kl = function_kl(out.require("s_adv"), out.require("t_adv"), p.kl_reduction, tau, p.kl_direction) * tau * tau
        return Losses(total=kl, parts={"kl_adv": kl.detach()})


@hookimpl
def register_methods(register):
    register(AdvFunMatch)
