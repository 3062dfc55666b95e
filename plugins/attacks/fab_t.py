"""`fab-t`: the targeted FAB attack (Croce & Hein 2020) through `pyautoattack`'s `FABAttack_PT`, with AutoAttack's
standard settings (100 iterations, one restart per target, the 9 most likely wrong classes as targets, capped at
num_classes - 1; alpha_max 0.1, eta 1.05, beta 0.9), Linf or L2. FAB finds minimal perturbations; a point counts
as broken only when its adversarial input lies inside the eps ball. Runs as `AutoAttackComponent`: clean-correct
points only, reseeded with `seed` per batch, global RNG restored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rkdbench import hookimpl
from rkdbench_plugins.attacks.autoattack import AutoAttackComponent

__all__ = ["FABTargeted"]


@dataclass(frozen=True)
class FABTargetedParams:
    steps: int = 100
    restarts: int = 1
    targets: int = 9  # capped at num_classes - 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9


class FABTargeted(AutoAttackComponent):
    name = "fab-t"
    Params = FABTargetedParams

    def _adversary(self, model: nn.Module, num_classes: int, device: torch.device):
        from pyautoattack.fab_pt import FABAttack_PT  # imported late: slow to import

        p = self.params
        return FABAttack_PT(
            model,
            norm=self.threat.norm,
            n_restarts=p.restarts,
            n_iter=p.steps,
            eps=self.threat.eps,
            alpha_max=p.alpha_max,
            eta=p.eta,
            beta=p.beta,
            seed=self.seed,
            targeted=True,
            device=device,
            n_target_classes=min(p.targets, num_classes - 1),
        )


@hookimpl
def register_attacks(register):
    register(FABTargeted)
