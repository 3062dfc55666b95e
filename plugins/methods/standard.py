"""`standard`: standard (non-adversarial) training, the no-defence baseline.

No attack and no teacher. Loss: CE(S(x), y) on the clean input, batch mean.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from rkdbench import Losses, Method, Outputs, Progress, hookimpl

__all__ = ["Standard"]


class Standard(Method):
    name = "standard"
    citation = "standard empirical-risk minimization (cross-entropy on clean inputs)"
    needs = frozenset({"s_nat"})
    attack = None

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        ce = F.cross_entropy(out.require("s_nat"), y)
        return Losses(total=ce, parts={"ce_nat": ce.detach()})


@hookimpl
def register_methods(register):
    register(Standard)
