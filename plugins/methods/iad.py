"""`iad` (IAD-I) and `iad-ii` (IAD-II): Introspective Adversarial Distillation (Zhu et al., ICLR 2022, "Reliable
Adversarial Distillation with Unreliable Teachers"), exactly as coded in ZFancy/IAD (IAD-I.py, IAD-II.py).

Attack (both): maximize CE(S(x'), y) against hard labels (the teacher is not involved), uniform start, 10 steps
of eps/4, student BatchNorm in **train** mode (as in ARD).

Reliability weight (both), from `epoch >= begin` on (before it alpha_i = 1, the ARD / AKD^2 warm-up):
    alpha_i = softmax(T(x'_i))[y_i] ** beta        (detached; the teacher on the student's adversarial point)

`iad` (IAD-I, ARD-based), all KLs `batchmean` (per-example class sum, divided by B):
    alpha_kd * tau^2 * KL(T(x)/tau || S(x')/tau)
  + alpha_kd * (1/B) * sum_i (1 - alpha_i) * KL(S(x_i) || S(x'_i))
  + (1 - alpha_kd) * CE(S(x), y)
The teacher term uses T on the **clean** x and is **not** multiplied by alpha_i; the introspection target S(x)
is **not** detached and has no temperature. Official defaults: tau = 1, alpha_kd = 1 (`--alpha`), beta = 0.1,
begin = 60 (of 200 epochs).

`iad-ii` (IAD-II, AKD^2-based), teachers ("robust", "natural") both evaluated on x':
    (1 - a1 - a2) * CE(S(x'), y)
  + a1 * tau^2 * [ (1/B) sum_i alpha_i KL(T_AT(x'_i)/tau || S(x'_i)/tau)
                   + (1/B) sum_i (1 - alpha_i) KL(S(x_i) || S(x'_i)) ]
  + a2 * tau^2 * KL(T_ST(x')/tau || S(x')/tau)
Here the robust-teacher term **is** weighted by alpha_i. Official defaults: a1 = 0.5, a2 = 0.25, tau = 1,
beta = 0.1, begin = 40. (AKD^2 is this loss with alpha_i = 1: `begin` past the last epoch.)

Harness addition (not in the official code): `begin_fraction`, when set, replaces `begin` by
round(begin_fraction * epochs) using `Progress.epochs`, so that short runs keep the official proportion
(60/200 = 0.3 for IAD-I, 40/200 = 0.2 for IAD-II).

BatchNorm side effects of IAD-I (`bn_side_effects = True`, the official behaviour): after the train-mode attack
the official step runs S(x') (the loss's pass), then `basic_net(inputs)` = S(x), and from `begin` on a second
S(x) inside the introspection term (identical outputs, so the loss reads one of them). Each train-mode forward
updates the student's BatchNorm running statistics; the engine runs them in this order, the repeated S(x) as a
no-grad pass counted as one student forward per example. `False`: S(x) then S(x'), once each. (IAD-II keeps the
engine's order.)

Deviation: `needs` is static, so S(x) is computed every step in IAD-II although the official code computes it
only from `begin` on (one extra train-mode clean forward, and BN-statistics update, per step before `begin`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkdbench import (
    AttackSpec,
    LogUniform,
    Losses,
    Method,
    Outputs,
    Progress,
    StudentForwards,
    Uniform,
    hookimpl,
    kl_div,
)

__all__ = ["IAD", "IADParams", "IADII", "IADIIParams", "reliability", "begin_epoch"]

CITATION = "Zhu et al., 'Reliable Adversarial Distillation with Unreliable Teachers', ICLR 2022"
ATTACK = AttackSpec(needs=frozenset({"s_adv"}), init="uniform", bn="train", steps=10, step_size=0.25)


@dataclass(frozen=True)
class IADParams:
    temperature: float = 1.0
    alpha_kd: float = 1.0
    beta: float = 0.1
    begin: int = 60
    begin_fraction: float | None = None
    bn_side_effects: bool = True


@dataclass(frozen=True)
class IADIIParams:
    temperature: float = 1.0
    alpha1: float = 0.5
    alpha2: float = 0.25
    beta: float = 0.1
    begin: int = 40
    begin_fraction: float | None = None


def begin_epoch(begin: int, begin_fraction: float | None, epochs: int) -> int:
    """The 0-based epoch from which alpha_i applies: `begin`, or round(begin_fraction * epochs) when set."""
    return begin if begin_fraction is None else int(round(begin_fraction * epochs))


def reliability(t_adv: Tensor, y: Tensor, beta: float, active: bool) -> Tensor:
    """alpha_i = softmax(T(x'))[i, y_i] ** beta, detached; all ones while the gate is off."""
    if not active:
        return torch.ones(y.shape[0], device=t_adv.device, dtype=t_adv.dtype)
    return F.softmax(t_adv.detach(), dim=1).gather(1, y[:, None]).squeeze(1).pow(beta)


def _introspection(s_adv: Tensor, s_nat: Tensor, alpha: Tensor) -> Tensor:
    """(1/B) * sum_i (1 - alpha_i) * KL(S(x_i) || S(x'_i)), target S(x) not detached, tau = 1."""
    per_example = kl_div(s_adv, F.softmax(s_nat, dim=1), "none")
    return (per_example * (1 - alpha)).sum() / s_adv.shape[0]


class IAD(Method):
    name = "iad"
    citation = CITATION
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "s_nat", "t_nat", "t_adv"})
    Params = IADParams
    space = {"temperature": LogUniform(0.5, 10.0), "alpha_kd": Uniform(0.5, 1.0), "beta": LogUniform(0.01, 1.0)}
    attack = ATTACK

    def student_forwards(self, progress: Progress) -> StudentForwards | None:
        p = self.params
        if not p.bn_side_effects:
            return None
        active = progress.epoch >= begin_epoch(p.begin, p.begin_fraction, progress.epochs)
        return StudentForwards(("s_adv", "s_nat", "s_nat") if active else ("s_adv", "s_nat"))

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        s_adv, s_nat = out.require("s_adv"), out.require("s_nat")
        active = progress.epoch >= begin_epoch(p.begin, p.begin_fraction, progress.epochs)
        alpha = reliability(out.require("t_adv"), y, p.beta, active)
        kd = kl_div(s_adv, F.softmax(out.require("t_nat") / tau, dim=1), "batchmean", temperature=tau) * tau * tau
        intro = _introspection(s_adv, s_nat, alpha)
        ce = F.cross_entropy(s_nat, y)
        total = p.alpha_kd * kd + p.alpha_kd * intro + (1 - p.alpha_kd) * ce
        return Losses(
            total=total,
            parts={
                "kd_adv": kd.detach(),
                "introspection": intro.detach(),
                "ce_nat": ce.detach(),
                "alpha_mean": alpha.detach().mean(),
            },
        )


class IADII(Method):
    name = "iad-ii"
    citation = CITATION
    teacher_roles = ("robust", "natural")
    needs = frozenset({"s_adv", "s_nat", "t_adv", "natural:t_adv"})
    Params = IADIIParams
    space = {
        "temperature": LogUniform(0.5, 10.0),
        "alpha1": Uniform(0.25, 0.6),  # alpha1 + alpha2 <= 1: the CE term's weight 1 - alpha1 - alpha2 stays >= 0
        "alpha2": Uniform(0.1, 0.4),
        "beta": LogUniform(0.01, 1.0),
    }
    attack = ATTACK

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        tau = p.temperature
        s_adv, s_nat, t_adv = out.require("s_adv"), out.require("s_nat"), out.require("t_adv")
        t_st = out.teachers["natural"]["t_adv"]
        active = progress.epoch >= begin_epoch(p.begin, p.begin_fraction, progress.epochs)
        alpha = reliability(t_adv, y, p.beta, active)
        ce = F.cross_entropy(s_adv, y)
        kd_at = (kl_div(s_adv, F.softmax(t_adv / tau, dim=1), "none", temperature=tau) * alpha).sum() / s_adv.shape[0]
        intro = _introspection(s_adv, s_nat, alpha)
        kd_st = kl_div(s_adv, F.softmax(t_st / tau, dim=1), "batchmean", temperature=tau)
        total = (1 - p.alpha1 - p.alpha2) * ce + p.alpha1 * tau * tau * (kd_at + intro) + p.alpha2 * tau * tau * kd_st
        return Losses(
            total=total,
            parts={
                "ce_adv": ce.detach(),
                "kd_robust": kd_at.detach(),
                "introspection": intro.detach(),
                "kd_natural": kd_st.detach(),
                "alpha_mean": alpha.detach().mean(),
            },
        )


@hookimpl
def register_methods(register):
    register(IAD)
    register(IADII)
