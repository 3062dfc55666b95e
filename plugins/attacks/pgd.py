"""`pgd`: projected gradient descent for evaluation (Madry et al.), Linf or L2, CE or CW-margin loss,
random restarts keeping the worst case per example. The protocol's PGD-20 is `steps=20, step_size=0.25`
(eps/4), uniform start, CE. Random starts come from a private generator seeded with `seed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rkdbench import Attack, AttackResult, PGDInit, hookimpl, pgd, predict

__all__ = ["PGD", "margin_loss"]


def margin_loss(logits: Tensor, y: Tensor, kappa: float = 50.0) -> Tensor:
    """Per-example CW margin max_{j!=y} z_j - z_y, clamped at kappa (larger = more wrong)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).clamp(max=kappa)


@dataclass(frozen=True)
class PGDParams:
    steps: int = 20
    step_size: float = 0.25  # fraction of eps
    restarts: int = 1
    loss: Literal["ce", "margin"] = "ce"
    init: PGDInit = "uniform"
    kappa: float = 50.0


class PGD(Attack):
    name = "pgd"
    Params = PGDParams
    display = "PGD-{steps}"
    sanity_rank = 1  # a white-box first-order attack: must not leave more points robust than clean accuracy
    flag_code = "pgd"
    legacy_labels = {"pgd20": {"steps": 20}}  # the built-in protocols' PGD-20, and the references' `pgd20`

    @classmethod
    def passes_per_point(cls, options: Mapping[str, Any], robust_fraction: float) -> tuple[float, float]:
        """Every restart runs every step on every point (a broken point is not dropped), plus one check pass."""
        steps = options["steps"] * max(options["restarts"], 1)
        return steps + 1, steps

    def _objective(self, model: nn.Module, y: Tensor):
        if self.params.loss == "ce":
            return lambda xa: F.cross_entropy(model(xa), y, reduction="none")
        if self.params.loss == "margin":
            return lambda xa: margin_loss(model(xa), y, self.params.kappa)
        raise ValueError(f"attack 'pgd' loss must be 'ce' or 'margin', got {self.params.loss!r}")

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        p, eps = self.params, self.threat.eps
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        x_adv = x.clone()
        robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(p.restarts):
            for i in range(0, len(x), self.batch_size):
                xb, yb, todo = x[i : i + self.batch_size], y[i : i + self.batch_size], robust[i : i + self.batch_size]
                if not bool(todo.any()):
                    continue
                candidate = pgd(
                    self._objective(model, yb),
                    xb,
                    eps=eps,
                    step_size=p.step_size * eps,
                    steps=p.steps,
                    norm=self.threat.norm,
                    init=p.init,
                    generator=generator,
                )
                broken = todo & (predict(model, candidate, self.batch_size) != yb)
                x_adv[i : i + self.batch_size][broken] = candidate[broken]
                robust[i : i + self.batch_size] &= ~broken
        return self._result(model, x_adv, y, {"steps": p.steps, "restarts": p.restarts, "loss": p.loss})


@hookimpl
def register_attacks(register):
    register(PGD)
