"""Fair-ARD's class reweighting (Yue, Mou, Wang, Zhao, NeurIPS 2023, NISP-official/Fair-ARD), shared by `fair-ard`,
`fair-rslad`, `fair-iad` and `fair-mtard` (a helper module: it registers nothing).

kappa_i counts the attack iterates t = 0..K-1 (the random start included, the final iterate excluded, no early stop)
at which argmax S(x_t) = y_i, in the attack's BatchNorm mode. At the end of each epoch the per-class sums are divided
by N/C (N = training examples seen in the epoch), w_c = (kappa_c + fair_eps) ** -fair_beta, then w <- w * C / sum(w),
then w <- clamp(w, *fair_clip) (the clamp after the normalization). The weights of epoch e are used during epoch
e + 1; the first epoch uses w = 1. Every per-example term of the base loss is multiplied by w_{y_i}.
The official scripts train with Nesterov SGD: `nesterov = True` overrides the protocol's optimizer.

The count is taken where the engine evaluates the attack objective (exactly at x_0..x_{K-1}): `attack_objective`
records argmax S(x_t) = y as a side channel next to the base method's objective, whose value it returns unchanged;
`loss` stages the batch's per-class counts and `on_step_end` commits them to `self.state` (`kappa_sum`, `seen`, `w`:
checkpointed with the cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rkdbench import Losses, Outputs, Progress

__all__ = ["FairParams", "ClassReweighting", "fair_class_weights", "CLASS_WEIGHTS_DOC"]

CLASS_WEIGHTS_DOC = """Class weights (shared by the Fair-ARD family, `rkdbench_plugins.methods.fair_weights`): kappa_i
counts the attack iterates t = 0..K-1 (random start included, final iterate excluded, no early stop) at which argmax
S(x_t) = y_i, in the attack's BatchNorm mode. At the end of each epoch kappa_c = (sum of kappa_i over class c)
/ (N / C), then w_c = (kappa_c + fair_eps) ** -fair_beta, w <- w * C / sum(w), w <- clamp(w, *fair_clip) (after the
normalization). Weights computed at the end of epoch e are used in epoch e + 1 (w = 1 in the first epoch); each
example's terms are multiplied by w_{y_i}. [I] N is the number of training examples seen in the epoch (the official
scripts hard-code CIFAR-10's N / C = 5000, which is the same there). `nesterov = True`: the official SGD(nesterov=True)
replaces the protocol's optimizer flag (set it to False to keep the protocol's)."""


@dataclass(frozen=True)
class FairParams:
    fair_beta: float = 2.0
    fair_clip: tuple[float, float] = (5 / 6, 5 / 2)
    fair_eps: float = 1e-5  # Fair-RSLAD's script has none (0): a class with kappa = 0 then gives NaN weights
    nesterov: bool = True  # the official optimizer is SGD(nesterov=True)


def fair_class_weights(kappa_mean: Tensor, beta: float, eps: float, clip: tuple[float, float]) -> Tensor:
    """w = clamp(C * v / sum(v), *clip) with v = (kappa_mean + eps) ** -beta."""
    v = (kappa_mean + eps) ** (-beta)
    return (v * (kappa_mean.shape[0] / v.sum())).clamp(clip[0], clip[1])


class ClassReweighting:
    """Mixin placed before a base `Method` class: class weights from per-class robustness during the attack."""

    params: Any
    state: dict[str, Tensor]
    _iterate_correct: Tensor | None = None
    _pending: tuple[Tensor, int] | None = None

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        correct = (out.require("s_adv").detach().argmax(dim=1) == y).to(torch.float64)
        self._iterate_correct = correct if self._iterate_correct is None else self._iterate_correct + correct
        return super().attack_objective(out, y)  # type: ignore[misc]

    def example_weights(self, y: Tensor, num_classes: int) -> Tensor:
        """w_{y_i} for the batch (ones until the first epoch ends); stages the batch's kappa for `on_step_end`."""
        if "w" not in self.state:
            self.state.update(
                w=torch.ones(num_classes, device=y.device),
                kappa_sum=torch.zeros(num_classes, dtype=torch.float64, device=y.device),
                seen=torch.zeros((), dtype=torch.float64, device=y.device),
            )
        kappa = (
            self._iterate_correct
            if self._iterate_correct is not None
            else torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
        )
        self._iterate_correct = None
        per_class = torch.zeros(num_classes, dtype=torch.float64, device=y.device).index_add_(0, y, kappa)
        self._pending = (per_class, y.shape[0])
        return self.state["w"].to(y.device)[y]

    def on_step_end(self, losses: Losses, progress: Progress) -> None:
        super().on_step_end(losses, progress)  # type: ignore[misc]
        if self._pending is not None:
            per_class, n = self._pending
            self._pending = None
            self.state["kappa_sum"] = self.state["kappa_sum"] + per_class.to(self.state["kappa_sum"].device)
            self.state["seen"] = self.state["seen"] + n
        if progress.step == progress.steps - 1 and "kappa_sum" in self.state:
            p, kappa_sum = self.params, self.state["kappa_sum"]
            kappa_mean = kappa_sum / (self.state["seen"] / kappa_sum.shape[0])
            self.state["w"] = fair_class_weights(kappa_mean, p.fair_beta, p.fair_eps, p.fair_clip).to(
                self.state["w"].dtype
            )
            self.state["kappa_sum"] = torch.zeros_like(kappa_sum)
            self.state["seen"] = torch.zeros_like(self.state["seen"])

    def configure_optimizer(self, train: dict[str, Any], network: str = "student") -> dict[str, Any]:
        return {**train, "nesterov": self.params.nesterov}
