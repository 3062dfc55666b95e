"""`trades`: TRADES (Zhang et al., ICML 2019), as in yaodongyu/TRADES (trades.py, train_trades_cifar10.py).

Attack: maximize the per-example KL(S(x) || S(x')) (sum over classes; the official loss sums over the batch,
which gives the same signed gradient), Gauss start 0.001*N(0, I), 10 steps of 0.007 at eps 0.031 (step_size
= 0.007/0.031 of eps), student BatchNorm in **eval** mode; S(x) in the attack is the engine's no-grad clean
output in the attack's BN mode (`s_nat` in `attack.needs`). Loss:
    CE(S(x), y)  +  beta * (1/B) * sum_i KL(S(x_i) || S(x'_i))
with gradients through **both** S(x) and S(x') (the target is not detached) and beta = 6 (official).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rkdbench import AttackSpec, LogUniform, Losses, Method, Outputs, Progress, hookimpl, kl_div

__all__ = ["TRADES", "TRADESParams"]


@dataclass(frozen=True)
class TRADESParams:
    beta: float = 6.0


class TRADES(Method):
    name = "trades"
    citation = "Zhang et al., 'Theoretically Principled Trade-off between Robustness and Accuracy', ICML 2019"
    needs = frozenset({"s_nat", "s_adv"})
    Params = TRADESParams
    space = {"beta": LogUniform(0.5, 20.0)}
    attack = AttackSpec(needs=frozenset({"s_adv", "s_nat"}), init="gauss", bn="eval", steps=10, step_size=0.007 / 0.031)

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return kl_div(out.require("s_adv"), F.softmax(out.require("s_nat"), dim=1), "none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        s_nat = out.require("s_nat")
        ce = F.cross_entropy(s_nat, y)
        robust = kl_div(out.require("s_adv"), F.softmax(s_nat, dim=1), "batchmean")
        total = ce + self.params.beta * robust
        return Losses(total=total, parts={"ce_nat": ce.detach(), "kl_robust": robust.detach()})


@hookimpl
def register_methods(register):
    register(TRADES)
