"""Stochastic weight averaging as a protocol option (`[train] swa_start`), reported next to the raw student.

From the 0-based epoch `swa_start` on, the student's parameters after each epoch enter an equal-weight running mean
(SAAD from epoch 95 of 200, PeerAiD from 214 of 300, as `torch.optim.swa_utils.AveragedModel` does). The running
mean and its count are checkpointed with the cell, so a killed run resumes bit for bit. After the last epoch the
averaged weights get fresh BatchNorm statistics: running statistics reset, then one pass over the augmented clean
training data in train mode with cumulative averaging (momentum None, as `update_bn`), drawing augmentations from
a private generator so that the training RNG streams are untouched. The result is saved as `swa.pt` and evaluated
as the `swa` selection (metrics `swa.*`); `last` stays the raw student.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..data import augment

__all__ = ["WeightAverage", "recompute_batchnorm"]


class WeightAverage:
    """Equal-weight running mean of a model's parameters (buffers are recomputed at the end, not averaged)."""

    def __init__(self, model: nn.Module) -> None:
        self.mean = [p.detach().clone() for p in model.parameters()]
        self.count = 0

    def update(self, model: nn.Module) -> None:
        self.count += 1
        with torch.no_grad():
            for mean, p in zip(self.mean, model.parameters()):
                mean.add_(p.detach() - mean, alpha=1.0 / self.count)  # mean_n = mean_{n-1} + (p - mean_{n-1}) / n

    def state_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mine, saved in zip(self.mean, state["mean"]):
            mine.copy_(saved)
        self.count = int(state["count"])

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of `model` carrying the averaged parameters (buffers as in `model` until recomputed)."""
        out = copy.deepcopy(model)
        with torch.no_grad():
            for p, mean in zip(out.parameters(), self.mean):
                p.copy_(mean)
        return out


def recompute_batchnorm(model: nn.Module, x_train: Tensor, batch_size: int, aug: str, seed: int) -> nn.Module:
    """Reset BatchNorm running statistics and recompute them with cumulative averaging over one pass of the
    augmented training data (in order, augmentations from a private generator)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    generator = torch.Generator(device=x_train.device).manual_seed(seed)
    was_training = model.training
    model.train()
    with torch.no_grad():
        for i in range(0, x_train.shape[0], batch_size):
            model(augment(aug, x_train[i : i + batch_size], generator))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return model
