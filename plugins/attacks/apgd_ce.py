"""`apgd-ce`: APGD on the cross-entropy loss (Croce & Hein 2020) through `pyautoattack`, with AutoAttack's
standard settings (100 iterations, rho 0.75, one restart), Linf or L2. It runs as AutoAttack's first stage does
(`AutoAttackComponent`: clean-correct points only, reseeded with `seed` per batch, global RNG restored), so with
the same seed and batch size its robust points are exactly those AutoAttack has left after APGD-CE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rkdbench import hookimpl
from rkdbench_plugins.attacks.autoattack import AutoAttackComponent

__all__ = ["APGDCE"]


@dataclass(frozen=True)
class APGDCEParams:
    steps: int = 100
    rho: float = 0.75
    restarts: int = 1


class APGDCE(AutoAttackComponent):
    name = "apgd-ce"
    Params = APGDCEParams

    def _adversary(self, model: nn.Module, num_classes: int, device: torch.device):
        from pyautoattack.autopgd_base import APGDAttack  # imported late: slow to import

        p = self.params
        return APGDAttack(
            model,
            n_iter=p.steps,
            norm=self.threat.norm,
            n_restarts=p.restarts,
            eps=self.threat.eps,
            seed=self.seed,
            loss="ce",
            eot_iter=1,
            rho=p.rho,
            device=device,
        )


@hookimpl
def register_attacks(register):
    register(APGDCE)
