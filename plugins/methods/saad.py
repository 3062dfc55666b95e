"""`saad`: Sample-wise Adaptive Adversarial Distillation (Lee & Chung, TMLR 2026, arXiv 2512.10275), as in
HongsinLee/saad (saad.py, attacks.py::saad_inner_loss, utils.py).

Attack: once per batch, with the teacher in eval, z = T(x) and g = grad_x sum_i z_{i,y_i}(x) (one teacher forward and
backward). At each iterate x' the teacher is replaced by a first-order proxy that moves only the true-class logit,
z~_{i,y_i} = z_{i,y_i} + lambda_inner * <g_i, x'_i - x_i>, the other entries staying z; PGD maximizes the summed
KL(softmax(z~_i) || softmax(S(x'_i))), the input gradient flowing through S **and** the linear correction. Gauss start
0.001*N(0, I) (no clamp), 10 steps of eps/4, student BN eval.
Loss: teacher without gradient on x, x' and the mirror point x - delta (unclamped); student in train mode, three
forwards in the official order S(x'), S(x - delta), S(x). Per example (tau = 1):
    a_i = KL(T(x'_i) || S(x'_i)),  c_i = KL(T(x_i) || S(x_i)),  m_i = the IGDM term of `igdm` (logit differences)
    H_i = Renyi entropy of order gamma of softmax(T(x'_i)) (gamma = 1: Shannon, -sum p log(p + 1e-12))
    w_i = entropy_scale * (H_i - min_j H_j)            (detached, not normalized; entropy_scale = 5 hard-coded)
    wbar_i = (w_i - min w) / (max w - min w + 1e-8)
    L = mean_i [ w_i * (a_i + igdm_alpha * (e / E) * m_i) + clean_weight * (1 - wbar_i) * c_i ],  e = 1..E
Official defaults: lambda_inner = 1, igdm_alpha = 1 (CIFAR-10; 10 for CIFAR-100 per a code comment), clean_weight
= 0 (beta; S(x) still runs in train mode and updates BN statistics: `clean_forward = True` keeps that side effect),
gamma = 1 (main.sh; `--gamma` has no default).
The official run evaluates a stochastic-weight-averaged student (SWA after every epoch from the 95th of 200): SWA is
a protocol option (`train.swa_start`, the `swa` selection next to the raw student), on in `cifar10-linf-8-paper-saad`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkdbench import AttackSpec, LogUniform, Losses, StepContext, StepMethod, hookimpl, kl_div
from rkdbench_plugins.methods.igdm import igdm_per_example, igdm_ramp

__all__ = ["SAAD", "SAADParams", "taylor_teacher", "renyi_entropy", "saad_weights", "saad_loss"]


@dataclass(frozen=True)
class SAADParams:
    lambda_inner: float = 1.0
    igdm_alpha: float = 1.0
    igdm_ref_epochs: int | None = None  # None = the run length (the official E)
    clean_weight: float = 0.0  # beta
    entropy_scale: float = 5.0  # hard-coded in the official code (`--entropy_scale` is unused)
    gamma: float = 1.0  # Renyi order of the teacher entropy
    clean_forward: bool = True  # official: S(x) runs in train mode even with clean_weight = 0 (BN side effect)


def taylor_teacher(z: Tensor, g: Tensor, x: Tensor, x_adv: Tensor, y: Tensor, lambda_inner: float) -> Tensor:
    """The teacher proxy at x': z with the true-class logit moved by lambda * <g_i, x'_i - x_i> (differentiable in
    x')."""
    shift = lambda_inner * (g * (x_adv - x)).flatten(1).sum(dim=1)
    return z + F.one_hot(y, z.shape[1]).to(z.dtype) * shift[:, None]


def renyi_entropy(probs: Tensor, gamma: float) -> Tensor:
    """Per-example Renyi entropy of order gamma; gamma = 1 is the official Shannon -sum p log(p + 1e-12)."""
    if gamma == 1:
        return -(probs * torch.log(probs + 1e-12)).sum(dim=1)
    return torch.log((probs**gamma).sum(dim=1)) / (1 - gamma)


def saad_weights(t_adv: Tensor, gamma: float, scale: float) -> tuple[Tensor, Tensor]:
    """(w, wbar): w_i = scale * (H_i - min H), wbar = min-max normalized w; both detached."""
    h = renyi_entropy(F.softmax(t_adv.detach(), dim=1), gamma)
    w = scale * (h - h.min())
    return w, (w - w.min()) / (w.max() - w.min() + 1e-8)


def saad_loss(
    s_adv: Tensor,
    s_mir: Tensor,
    s_nat: Tensor | None,
    t_adv: Tensor,
    t_mir: Tensor,
    t_nat: Tensor,
    ramp: float,
    p: SAADParams,
) -> Losses:
    """SAAD's outer loss from the six logit tensors (teacher logits detached here)."""
    t_adv, t_mir, t_nat = t_adv.detach(), t_mir.detach(), t_nat.detach()
    w, wbar = saad_weights(t_adv, p.gamma, p.entropy_scale)
    a = kl_div(s_adv, F.softmax(t_adv, dim=1), "none")
    m = igdm_per_example(s_adv, s_mir, t_adv, t_mir)
    per_example = w * (a + p.igdm_alpha * ramp * m)
    parts = {"kl_adv": a.mean().detach(), "igdm": m.mean().detach(), "w_mean": w.mean()}
    if p.clean_weight != 0:
        c = kl_div(s_nat, F.softmax(t_nat, dim=1), "none")
        per_example = per_example + p.clean_weight * (1 - wbar) * c
        parts["kl_nat"] = c.mean().detach()
    return Losses(total=per_example.mean(), parts=parts)


class SAAD(StepMethod):
    name = "saad"
    citation = "Lee & Chung, 'Sample-wise Adaptive Adversarial Distillation', TMLR 2026 (arXiv 2512.10275)"
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "s_mir", "s_nat", "t_nat", "t_adv", "t_mir"})  # documentation: training_step runs them
    Params = SAADParams
    space = {
        "lambda_inner": LogUniform(0.1, 10.0),
        "igdm_alpha": LogUniform(0.1, 30.0),
        "entropy_scale": LogUniform(0.5, 50.0),
    }
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="gauss", bn="eval", steps=10, step_size=0.25)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> Losses:
        x, y = batch
        p, student, teacher = self.params, ctx.student, ctx.teacher
        n = x.shape[0]
        x_in = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            z = teacher(x_in)
            (g,) = torch.autograd.grad(z.gather(1, y[:, None]).sum(), x_in)
        z = z.detach()

        def objective(x_adv: Tensor) -> Tensor:
            target = F.softmax(taylor_teacher(z, g, x, x_adv, y, p.lambda_inner), dim=1)
            return kl_div(student(x_adv), target, "none")

        x_adv = ctx.attack(x, y, objective)
        x_mir = 2 * x - x_adv  # x - delta, unclamped as in the official code
        with torch.no_grad():
            t_adv, t_mir = teacher(x_adv), teacher(x_mir)
        s_adv, s_mir = student(x_adv), student(x_mir)
        s_nat = student(x) if (p.clean_forward or p.clean_weight != 0) else None
        if ctx.count is not None:
            student_passes = 2 + (s_nat is not None)
            ctx.count(
                teacher_forward=3 * n,
                teacher_backward=n,
                student_forward=student_passes * n,
                student_backward=(2 + (p.clean_weight != 0)) * n,
            )
        return saad_loss(s_adv, s_mir, s_nat, t_adv, t_mir, z, igdm_ramp(ctx.progress, p.igdm_ref_epochs), p)


@hookimpl
def register_methods(register):
    register(SAAD)
