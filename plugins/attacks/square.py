"""`square`: the Square Attack (Andriushchenko et al. 2020), score-based and gradient-free, through `pyautoattack`,
with AutoAttack's standard settings (5000 queries, p_init 0.8, margin loss, one restart, no rescaled schedule),
Linf or L2. Runs as `AutoAttackComponent`: clean-correct points only, reseeded with `seed` per batch, global RNG
restored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rkdbench import hookimpl
from rkdbench_plugins.attacks.autoattack import AutoAttackComponent

__all__ = ["Square"]


@dataclass(frozen=True)
class SquareParams:
    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1


class Square(AutoAttackComponent):
    name = "square"
    Params = SquareParams
    black_box = True

    def _adversary(self, model: nn.Module, num_classes: int, device: torch.device):
        from pyautoattack.square import SquareAttack  # imported late: slow to import

        p = self.params
        return SquareAttack(
            model,
            norm=self.threat.norm,
            n_queries=p.queries,
            eps=self.threat.eps,
            p_init=p.p_init,
            n_restarts=p.restarts,
            seed=self.seed,
            loss="margin",
            resc_schedule=False,
            device=device,
        )


@hookimpl
def register_attacks(register):
    register(Square)
