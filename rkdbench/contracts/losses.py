"""Loss primitives shared by method plugins, with every reduction the official codes use made explicit.

`kl_div(student_logits, target_probs, reduction)` is KL(target || softmax(student)) exactly as
`nn.KLDivLoss(reduction)(log_softmax(student), target)`: `mean` divides the sum by B*C (PyTorch's
default, used by ARD, RSLAD-style code and AdaAD on CIFAR-10), `batchmean` by B (the true KL), `none`
returns the per-example KL (summed over classes).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["KLReduction", "ScalarReduction", "kl_div", "soft_cross_entropy", "reduce_per_example"]

KLReduction = Literal["mean", "batchmean", "sum", "none"]
ScalarReduction = Literal["mean", "batchmean", "sum"]  # a method's `kl_reduction`: the loss is a scalar


def reduce_per_example(per_example: Tensor, reduction: KLReduction, num_classes: int) -> Tensor:
    """Reduce a per-example class-summed value the way `nn.KLDivLoss(reduction)` would have reduced its elements."""
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    if reduction == "batchmean":
        return per_example.sum() / per_example.shape[0]
    if reduction == "mean":
        return per_example.sum() / (per_example.shape[0] * num_classes)
    raise ValueError(f"unknown KL reduction {reduction!r}; allowed: {', '.join(get_args(KLReduction))}")


def kl_div(
    student_logits: Tensor, target_probs: Tensor, reduction: KLReduction = "batchmean", temperature: float = 1.0
) -> Tensor:
    """KL(target || softmax(student / temperature)); the target is used as given (detach it if it should be
    constant)."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    per_example = (torch.xlogy(target_probs, target_probs) - target_probs * log_q).sum(dim=1)
    return reduce_per_example(per_example, reduction, student_logits.shape[1])


def soft_cross_entropy(student_logits: Tensor, target_probs: Tensor) -> Tensor:
    """Per-example -sum(target * log_softmax(student)) (AKD's `softXEnt` before its batch mean)."""
    return -(target_probs * F.log_softmax(student_logits, dim=1)).sum(dim=1)
