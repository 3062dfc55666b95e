"""`rsnl`: "Robust Student Network Learning" (Guo, Xu, He, Shi, Xu, Tao; IEEE TNNLS 2019, arXiv 1807.11158),
METHODS.md §10d.

No public code; this is the implementable reading [I] of the abstract, following the margin-over-gradient bound
of Hein & Andriushchenko (NeurIPS 2017): the smallest perturbation that flips class y is at least
min_j (z_y - z_j) / ||grad_x (z_y - z_j)||_q, so the student raises its margins (helped by the teacher) and
flattens the margin's input gradient. It trains on **clean** inputs only (no attack):
    base   = CE(S(x), y) + lambda_kd * tau^2 * KL(T(x)/tau || S(x)/tau)            (Hinton KD, `batchmean`)
    conf   = (1/B) sum_i sum_{j != y_i} max(0, m_T,ij - m_S,ij),   m_ij = z_i,y_i - z_i,j   (teacher margins are
             targets the student's must reach; the teacher is constant)
    grad   = (1/B) sum_i || grad_{x_i} (z_S,i,y_i - z_S,i,j^_i) ||_2^2,   j^_i = the student's strongest wrong class
             (index chosen without gradient; double backprop, `create_graph=True`)
    L      = base + lambda_conf * conf + lambda_grad * grad
Weights unknown [U]: defaults lambda_kd = 1, tau = 4, lambda_conf = 0.5, lambda_grad = 1e-3 are **inferred**
starting points (METHODS.md), to be swept on the validation split.

The method is a `StepMethod` and writes its own `training_step(batch, ctx)` (the gradient term needs the input
gradient of the student's own forward pass); the maths is the pure function `rsnl_loss(z_s, z_t, input_grad, y, ...)`.
Note: the input gradient is taken of the batch sum of margins; with the student's BatchNorm in train mode that
sum also carries the (small) cross-example terms through the batch statistics, as in common double-backprop
implementations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkdbench import LogUniform, Losses, StepContext, StepMethod, hookimpl, kl_div

__all__ = ["RSNL", "RSNLParams", "rsnl_loss", "strongest_wrong_margin"]


@dataclass(frozen=True)
class RSNLParams:
    lambda_kd: float = 1.0
    temperature: float = 4.0
    lambda_conf: float = 0.5
    lambda_grad: float = 1e-3


def strongest_wrong_margin(z: Tensor, y: Tensor) -> Tensor:
    """Per-example z_y - z_j^ with j^ = argmax_{j != y} z_j (the index is chosen without gradient)."""
    wrong = z.detach().scatter(1, y[:, None], float("-inf")).argmax(dim=1)
    return z.gather(1, y[:, None]).squeeze(1) - z.gather(1, wrong[:, None]).squeeze(1)


def rsnl_loss(
    z_s: Tensor,
    z_t: Tensor,
    input_grad: Tensor,
    y: Tensor,
    *,
    lambda_kd: float = 1.0,
    temperature: float = 4.0,
    lambda_conf: float = 0.5,
    lambda_grad: float = 1e-3,
) -> Losses:
    """The RSNL loss from the student's logits, the teacher's logits, the input gradient of the student's
    strongest-wrong-class margin (one row per example) and the labels."""
    tau = temperature
    z_t = z_t.detach()
    ce = F.cross_entropy(z_s, y)
    kd = kl_div(z_s, F.softmax(z_t / tau, dim=1), "batchmean", temperature=tau) * tau * tau
    m_s = z_s.gather(1, y[:, None]) - z_s  # m_j = z_y - z_j (zero at j = y)
    m_t = z_t.gather(1, y[:, None]) - z_t
    conf = F.relu(m_t - m_s).sum(dim=1).mean()  # the j = y entry is relu(0) = 0
    grad = input_grad.flatten(1).pow(2).sum(dim=1).mean()
    total = ce + lambda_kd * kd + lambda_conf * conf + lambda_grad * grad
    return Losses(
        total=total,
        parts={"ce_nat": ce.detach(), "kd_nat": kd.detach(), "conf": conf.detach(), "grad_norm2": grad.detach()},
    )


class RSNL(StepMethod):
    name = "rsnl"
    citation = "Guo, Xu, He, Shi, Xu, Tao, 'Robust Student Network Learning', IEEE TNNLS 2019 (arXiv 1807.11158)"
    teacher_roles = ("robust",)
    needs = frozenset({"s_nat", "t_nat"})  # documentation only: the custom training_step computes its own passes
    Params = RSNLParams
    space = {
        "lambda_kd": LogUniform(0.1, 10.0),
        "temperature": LogUniform(1.0, 20.0),
        "lambda_conf": LogUniform(0.05, 5.0),
        "lambda_grad": LogUniform(1e-4, 1e-2),
    }
    attack = None

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> Losses:
        x, y = batch
        x_in = x.detach().clone().requires_grad_(True)
        z_s = ctx.student(x_in)
        with torch.no_grad():
            z_t = ctx.teacher(x)
        p = self.params
        if p.lambda_grad != 0:
            margin = strongest_wrong_margin(z_s, y)
            (input_grad,) = torch.autograd.grad(margin.sum(), x_in, create_graph=True)
        else:  # the gradient term is off: skip the double backprop
            input_grad = torch.zeros_like(x_in)
        if ctx.count is not None:  # the loss's backward goes through the input-gradient graph: two passes
            n = x.shape[0]
            ctx.count(student_forward=n, teacher_forward=n, student_backward=n * (2 if p.lambda_grad != 0 else 1))
        return rsnl_loss(
            z_s,
            z_t,
            input_grad,
            y,
            lambda_kd=p.lambda_kd,
            temperature=p.temperature,
            lambda_conf=p.lambda_conf,
            lambda_grad=p.lambda_grad,
        )


@hookimpl
def register_methods(register):
    register(RSNL)
