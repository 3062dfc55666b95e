"""`apgd-t`: APGD on the targeted DLR loss (Croce & Hein 2020) through `pyautoattack`, with AutoAttack's
standard settings (100 iterations, rho 0.75, one restart per target, the 9 most likely wrong classes as targets,
capped at num_classes - 1), Linf or L2. Runs as `AutoAttackComponent`: clean-correct points only, reseeded with
`seed` per batch, global RNG restored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rkdbench import ConfigError, hookimpl
from rkdbench_plugins.attacks.autoattack import AutoAttackComponent

__all__ = ["APGDTargeted"]


@dataclass(frozen=True)
class APGDTargetedParams:
    steps: int = 100
    rho: float = 0.75
    restarts: int = 1
    targets: int = 9  # capped at num_classes - 1


class APGDTargeted(AutoAttackComponent):
    name = "apgd-t"
    Params = APGDTargetedParams

    def _adversary(self, model: nn.Module, num_classes: int, device: torch.device):
        from pyautoattack.autopgd_base import APGDAttack_targeted  # imported late: slow to import

        if num_classes < 4:  # the loss's denominator reads the 4th-largest logit
            raise ConfigError(
                f"attack 'apgd-t': the targeted DLR loss needs at least 4 classes; the model has {num_classes}"
            )
        p = self.params
        return APGDAttack_targeted(
            model,
            n_iter=p.steps,
            norm=self.threat.norm,
            n_restarts=p.restarts,
            eps=self.threat.eps,
            seed=self.seed,
            eot_iter=1,
            rho=p.rho,
            n_target_classes=min(p.targets, num_classes - 1),
            device=device,
        )


@hookimpl
def register_attacks(register):
    register(APGDTargeted)
