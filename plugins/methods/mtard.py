"""`mtard`: Multi-Teacher Adversarial Robustness Distillation (Zhao et al., ECCV 2022, "Enhanced Accuracy and
Robustness via Multi-Teacher Adversarial Distillation"), as in zhaoshiji123/MTARD (mtard/mtard_loss.py,
mtard/mtard_resnet18_cifar10.py); `balance_temperature = True` adds B-MTARD's entropy-balanced temperatures
(Zhao et al., TPAMI 2024, zhaoshiji123/MTARD-extension resnet18_mtard_cifar10.py).

Teachers ("robust", "natural"). Attack: maximize CE(S(x'), y) against hard labels, Gauss start 0.001*N(0, I),
10 steps of eps/4, student BatchNorm in **eval** mode. Loss (tau = 1):
    L = w_adv * KL(T_adv(x') || S(x'))  +  w_nat * KL(T_nat(x) || S(x))
with RSLAD's element-wise `/C-manual` KL (`rslad_kl`; `kl_reduction = "batchmean"` for the true KL) and
`loss_scale = 10` for the CIFAR-100 recipe.

Adaptive weights (§8.3), kept as tensors in `self.state` (checkpointed): w_nat, w_adv (start 0.5 / 0.5) and the
first batch's losses l_adv0, l_nat0 (NaN until the first step). Per step, with the batch's detached losses:
    r_adv = (L_adv / L_adv0) ** bert,  r_nat = (L_nat / L_nat0) ** bert        (bert = 1)
    w_nat <- w_nat - eta * (w_nat - r_nat / (r_adv + r_nat)),  w_adv = 1 - w_nat    (eta = 0.025)
As in the official loop, the weights are updated **before** the batch's loss is formed: `loss` computes the
updated weights purely from `self.state` and the batch's losses and uses them; `on_step_end` recomputes the
same update from the logged parts and commits it to `self.state`. Official: eta x 0.1 at each lr decay
(mtard_resnet18_cifar10.py, with the lr). Here `eta_decay_epochs = "auto"` (the default) takes the decay epochs
from the protocol's lr schedule (`Progress.lr_milestones`: the `train.milestones` of a `piecewise` schedule, none
for `cosine` / `constant`), so eta drops exactly when the lr does; an explicit list of 0-based epochs (e.g.
[215, 260, 285]) overrides it, and [] never decays. Eta is multiplied by `eta_decay` = 0.1 for every decay
epoch <= the current one.

B-MTARD (`balance_temperature = True`, §8.4): T_adv(x') is softened by temp_adv and T_nat(x) by temp_nat (the
student is not), both starting at 1 and kept in `self.state`; after each step (the batch's loss uses the current
temperatures), with H = mean over B*C of p * log(p + 1e-5) of the softened teacher probabilities:
    temp_adv -= temp_lr * sign(H_adv / H_nat - 1),  temp_nat -= temp_lr * sign(H_nat / H_adv - 1),
clipped to [1, 10]; temp_lr = 0.001, decayed like eta. The weights then use the symmetric update on
r_i = lhat_i / mean(lhat) (no `bert`), clipped at >= 0 and renormalized (numerically the same as ECCV's when
bert = 1). B-MTARD's own attack helper and ResNet-56 clean teacher are not reproduced: the attack stays
MTARD's CE attack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkdbench import (
    AttackSpec,
    Choice,
    ConfigError,
    LogUniform,
    Losses,
    Method,
    Outputs,
    Progress,
    ScalarReduction,
    Uniform,
    hookimpl,
    kl_div,
)
from rkdbench_plugins.methods.rslad import rslad_kl

__all__ = ["MTARD", "MTARDParams", "teacher_entropy", "eta_decay_epochs"]


@dataclass(frozen=True)
class MTARDParams:
    eta: float = 0.025
    w_nat_init: float = 0.5
    bert: float = 1.0
    kl_reduction: ScalarReduction = "mean"  # RSLAD's /C-manual form; "batchmean" = true KL
    loss_scale: float = 1.0  # 10 in the CIFAR-100 scripts
    # "auto" = the protocol's lr milestones (the None default becomes "auto": it lets a list or "auto" be given)
    eta_decay_epochs: tuple[int, ...] | str | None = None
    eta_decay: float = 0.1
    balance_temperature: bool = False  # B-MTARD
    temp_lr: float = 0.001
    temp_min: float = 1.0
    temp_max: float = 10.0

    def __post_init__(self) -> None:
        value = "auto" if self.eta_decay_epochs is None else self.eta_decay_epochs
        if isinstance(value, (list, tuple)) and all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in value
        ):
            object.__setattr__(self, "eta_decay_epochs", tuple(value))
        elif value == "auto":
            object.__setattr__(self, "eta_decay_epochs", "auto")
        else:
            raise ConfigError(
                f"method 'mtard' parameter 'eta_decay_epochs' = {value!r} is not allowed; allowed: "
                f'"auto" (the protocol\'s lr milestones) or a list of 0-based epochs'
            )


def eta_decay_epochs(setting: tuple[int, ...] | str, progress: Progress) -> tuple[int, ...]:
    """The epochs at which eta decays: the protocol's lr milestones for "auto", else the explicit list."""
    return tuple(progress.lr_milestones) if setting == "auto" else tuple(setting)


def teacher_entropy(probs: Tensor) -> Tensor:
    """B-MTARD's H: mean over B*C of p * log(p + 1e-5) (a negative entropy per class)."""
    return torch.mean(torch.log(probs + 1e-5) * probs)


class MTARD(Method):
    name = "mtard"
    citation = (
        "Zhao et al., 'Enhanced Accuracy and Robustness via Multi-Teacher Adversarial Distillation', ECCV 2022; "
        "B-MTARD: Zhao et al., TPAMI 2024"
    )
    teacher_roles = ("robust", "natural")
    needs = frozenset({"s_adv", "s_nat", "t_adv", "natural:t_nat"})
    Params = MTARDParams
    space = {
        "eta": LogUniform(0.0025, 0.25),
        "w_nat_init": Uniform(0.25, 0.75),
        "kl_reduction": Choice("mean", "batchmean"),
    }
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="gauss", bn="eval", steps=10, step_size=0.25)

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        p = self.params
        nan = torch.tensor(float("nan"))
        self.state = {
            "w_nat": torch.tensor(p.w_nat_init),
            "w_adv": torch.tensor(1.0 - p.w_nat_init),
            "l_adv0": nan.clone(),
            "l_nat0": nan.clone(),
        }
        if p.balance_temperature:
            self.state.update(temp_adv=torch.tensor(1.0), temp_nat=torch.tensor(1.0))

    def attack_objective(self, out: Outputs, y: Tensor) -> Tensor:
        return F.cross_entropy(out.require("s_adv"), y, reduction="none")

    def _decay(self, progress: Progress) -> float:
        p = self.params
        return p.eta_decay ** sum(progress.epoch >= e for e in eta_decay_epochs(p.eta_decay_epochs, progress))

    def _kl(self, student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
        if self.params.kl_reduction == "mean":
            return rslad_kl(student_logits, teacher_probs)
        return kl_div(student_logits, teacher_probs, self.params.kl_reduction)

    def next_state(self, parts: dict[str, Tensor], progress: Progress) -> dict[str, Tensor]:
        """The state after one step, from the current state and the batch's detached parts (pure)."""
        p = self.params
        kl_adv, kl_nat = parts["kl_adv"].detach(), parts["kl_nat"].detach()
        s = {k: v.to(kl_adv.device) for k, v in self.state.items()}
        l_adv0 = torch.where(torch.isnan(s["l_adv0"]), kl_adv, s["l_adv0"])
        l_nat0 = torch.where(torch.isnan(s["l_nat0"]), kl_nat, s["l_nat0"])
        lhat_adv, lhat_nat = kl_adv / l_adv0, kl_nat / l_nat0
        decay = self._decay(progress)
        eta = p.eta * decay
        new = {"l_adv0": l_adv0, "l_nat0": l_nat0}
        if not p.balance_temperature:
            r_adv, r_nat = lhat_adv**p.bert, lhat_nat**p.bert
            w_nat = s["w_nat"] - eta * (s["w_nat"] - r_nat / (r_adv + r_nat))
            new.update(w_nat=w_nat, w_adv=1 - w_nat)
            return new
        mean = (lhat_adv + lhat_nat) / 2
        r_adv, r_nat = lhat_adv / mean, lhat_nat / mean
        w_adv = (s["w_adv"] - eta * (s["w_adv"] - r_adv / (r_adv + r_nat))).clamp(min=0)
        w_nat = (s["w_nat"] - eta * (s["w_nat"] - r_nat / (r_adv + r_nat))).clamp(min=0)
        coef = 1.0 / (w_adv + w_nat)
        h_adv, h_nat = parts["h_adv"].detach(), parts["h_nat"].detach()
        temp_lr = p.temp_lr * decay
        temp_adv = (s["temp_adv"] - temp_lr * torch.sign(h_adv / h_nat - 1)).clamp(p.temp_min, p.temp_max)
        temp_nat = (s["temp_nat"] - temp_lr * torch.sign(h_nat / h_adv - 1)).clamp(p.temp_min, p.temp_max)
        new.update(w_adv=w_adv * coef, w_nat=w_nat * coef, temp_adv=temp_adv, temp_nat=temp_nat)
        return new

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        s_adv = out.require("s_adv")
        t_adv, t_nat = out.require("t_adv"), out.teachers["natural"]["t_nat"]
        if p.balance_temperature:
            t_adv = t_adv / self.state["temp_adv"].to(t_adv.device)
            t_nat = t_nat / self.state["temp_nat"].to(t_nat.device)
        p_adv, p_nat = F.softmax(t_adv.detach(), dim=1), F.softmax(t_nat.detach(), dim=1)
        kl_adv = self._kl(s_adv, p_adv)
        kl_nat = self._kl(out.require("s_nat"), p_nat)
        parts = {"kl_adv": kl_adv.detach(), "kl_nat": kl_nat.detach()}
        if p.balance_temperature:
            parts.update(h_adv=teacher_entropy(p_adv), h_nat=teacher_entropy(p_nat))
        new = self.next_state(parts, progress)
        total = p.loss_scale * (new["w_adv"] * kl_adv + new["w_nat"] * kl_nat)
        parts.update(w_adv=new["w_adv"], w_nat=new["w_nat"])
        if p.balance_temperature:
            parts.update(
                temp_adv=self.state["temp_adv"].to(s_adv.device), temp_nat=self.state["temp_nat"].to(s_adv.device)
            )
        return Losses(total=total, parts=parts)

    def on_step_end(self, losses: Losses, progress: Progress) -> None:
        self.state.update(self.next_state(losses.parts, progress))


@hookimpl
def register_methods(register):
    register(MTARD)
