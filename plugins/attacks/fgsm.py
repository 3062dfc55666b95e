"""`fgsm`: the fast gradient sign method (Goodfellow et al. 2015), one signed-gradient step of size eps on the
cross-entropy from the clean input (no random start), clipped to [0, 1]; Linf only. It is the shared `pgd`
primitive with one step and a zero start, so x_adv is always the FGSM point, broken or not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rkdbench import Attack, AttackResult, hookimpl, pgd

__all__ = ["FGSM"]


class FGSM(Attack):
    name = "fgsm"
    norms = ("Linf",)

    @classmethod
    def passes_per_point(cls, options, robust_fraction: float) -> tuple[float, float]:
        return 2, 1  # one gradient step and the check pass

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        eps = self.threat.eps
        batches = []
        for i in range(0, len(x), self.batch_size):
            yb = y[i : i + self.batch_size]
            objective = lambda xa, yb=yb: F.cross_entropy(model(xa), yb, reduction="none")  # noqa: E731
            batches.append(
                pgd(objective, x[i : i + self.batch_size], eps=eps, step_size=eps, steps=1, norm="Linf", init="zero")
            )
        x_adv = torch.cat(batches) if batches else x.clone()
        return self._result(model, x_adv, y, {"steps": 1})


@hookimpl
def register_attacks(register):
    register(FGSM)
