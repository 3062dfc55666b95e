"""`pgd-at`: Madry et al. (ICLR 2018) adversarial training, as in locuslab/robust_overfitting.

Attack: maximize CE(S(x'), y), uniform start, 10 steps of eps/4, student BatchNorm in **train** mode
(the reference code attacks inside `model.train()`). Loss: CE(S(x'), y), batch mean. No teacher.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from rkdbench import AttackSpec, Losses, Method, Outputs, Progress, hookimpl

__all__ = ["PGDAT"]


class PGDAT(Method):
    name = "pgd-at"
    citation = "Madry et al., ICLR 2018; reference code locuslab/robust_overfitting"
    needs = frozenset({"s_adv"})
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="uniform", bn="train", steps=10, step_size=0.25)

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        ce = F.cross_entropy(out.require("s_adv"), y)
        return Losses(total=ce, parts={"ce_adv": ce.detach()})


@hookimpl
def register_methods(register):
    register(PGDAT)
