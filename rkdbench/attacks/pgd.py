"""The one projected-gradient primitive behind every training attack and the `pgd`/`cw` evaluation attacks.

`pgd` maximizes the sum of a per-example objective of the perturbed input inside an Linf or L2 ball,
clipped to [0, 1]. Random starts draw from an explicit `torch.Generator` when one is given, so that a
caller can keep attacks out of the training RNG stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

from ..contracts.method import PGDInit

__all__ = ["pgd", "project", "random_start"]

Norm = Literal["Linf", "L2"]


def _l2_norms(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def project(x_adv: Tensor, x: Tensor, eps: float, norm: Norm) -> Tensor:
    """Project `x_adv` onto the eps-ball around `x` intersected with [0, 1]."""
    delta = x_adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _l2_norms(delta)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def random_start(
    x: Tensor, eps: float, norm: Norm, init: PGDInit, gauss_std: float = 0.001, generator: torch.Generator | None = None
) -> Tensor:
    """The starting point: `uniform` in the ball, `gauss` = x + gauss_std * N(0, I) (TRADES style), or `zero`."""
    if init == "zero":
        return x.clone()
    if init == "gauss":
        return x + gauss_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if init != "uniform":
        raise ValueError(f"unknown PGD init {init!r}; allowed: {', '.join(get_args(PGDInit))}")
    if norm == "Linf":
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    else:
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        radius = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, device=x.device, dtype=x.dtype)
        noise = direction / _l2_norms(direction) * radius * eps
    return (x + noise).clamp(0.0, 1.0)


def pgd(
    objective: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: Norm = "Linf",
    init: PGDInit = "uniform",
    gauss_std: float = 0.001,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Maximize `objective(x_adv).sum()` by `steps` signed (Linf) or normalized (L2) gradient steps; returns x_adv
    detached."""
    x = x.detach()
    x_adv = random_start(x, eps, norm, init, gauss_std, generator).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            value = objective(x_adv)
            (grad,) = torch.autograd.grad(value.sum(), x_adv)
        with torch.no_grad():
            step = grad.sign() if norm == "Linf" else grad / _l2_norms(grad)
            x_adv = project(x_adv + step_size * step, x, eps, norm)
    return project(x_adv, x, eps, norm).detach() if steps == 0 else x_adv.detach()
