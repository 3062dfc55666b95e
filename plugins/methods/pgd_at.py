"""`pgd-at`: Madry et al. (ICLR 2018) adversarial training, as in locuslab/robust_overfitting.

Attack: maximize CE(S(x'), y), uniform start, 10 steps of eps/4, student BatchNorm in **train** mode
(the reference code attacks inside `model.train()`). Loss: CE(S(x'), y), batch mean. No teacher.

BatchNorm side effects (`bn_side_effects = True`, the official behaviour of train_cifar.py): `attack_pgd` ends
with one more train-mode forward on x' (to pick the best restart), and after the optimizer step the loop runs
S(x) in train mode for its logged training accuracy, with the updated weights. Neither carries gradient, both
update the student's BatchNorm running statistics; the engine runs them at those points (no-grad, one student
forward per example each). `False` skips them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import AttackSpec, Losses, Method, Outputs, Progress, StudentForwards, hookimpl

__all__ = ["PGDAT", "PGDATParams"]


@dataclass(frozen=True)
class PGDATParams:
    bn_side_effects: bool = True


class PGDAT(Method):
    name = "pgd-at"
    citation = "Madry et al., ICLR 2018; reference code locuslab/robust_overfitting"
    needs = frozenset({"s_adv"})
    Params = PGDATParams
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="uniform", bn="train", steps=10, step_size=0.25)

    def student_forwards(self, progress: Progress) -> StudentForwards | None:
        return StudentForwards(("s_adv", "s_adv"), after_step=("s_nat",)) if self.params.bn_side_effects else None

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        ce = F.cross_entropy(out.require("s_adv"), y)
        return Losses(total=ce, parts={"ce_adv": ce.detach()})


@hookimpl
def register_methods(register):
    register(PGDAT)
