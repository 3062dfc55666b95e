"""`fair-mtard`: Fair-MTARD (Yue et al., NeurIPS 2023, NISP-official/Fair-ARD `Fair-MTARD.py`): MTARD with class
weights from per-class robustness during the attack (see `rkdbench_plugins.methods.fair_weights`).

Attack: MTARD's (CE, Gauss start, 10 steps of eps/4, student BN **eval**; kappa counted in eval mode). Loss: MTARD's
adaptive-weight sum of two RSLAD-form (/C) KL terms, each example multiplied by w_{y_i}:
    w_adv * (1/(B*C)) sum_i w_{y_i} r(S(x'_i), T_adv(x'_i))  +  w_nat * (1/(B*C)) sum_i w_{y_i} r(S(x_i), target_i)
The adaptive weights (eta = 0.025, x0.1 at each lr decay via `eta_decay_epochs`) are updated from the **weighted**
losses, as in the script. Official bug kept by default (`natural_target = "robust_adv"`): the natural term's target is
the robust teacher at x', T_adv(x'), and the natural teacher is never used, so only the robust teacher is needed;
`natural_target = "natural_clean"` gives MTARD's intended T_nat(x) (teacher roles robust + natural).
Official schedule: 300 epochs, lr x0.1 at 215, 260, 285, Nesterov SGD.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from torch import Tensor

from rkdbench import Losses, Outputs, Progress, Uniform, hookimpl, kl_div
from rkdbench_plugins.methods.fair_ard import CITATION
from rkdbench_plugins.methods.fair_rslad import rslad_per_example
from rkdbench_plugins.methods.fair_weights import CLASS_WEIGHTS_DOC, ClassReweighting, FairParams
from rkdbench_plugins.methods.mtard import MTARD, MTARDParams

__all__ = ["FairMTARD", "FairMTARDParams"]

__doc__ = f"{__doc__}\n{CLASS_WEIGHTS_DOC}"


@dataclass(frozen=True)
class FairMTARDParams(FairParams, MTARDParams):
    natural_target: Literal["robust_adv", "natural_clean"] = (
        "robust_adv"  # official (a bug): T_adv(x'); "natural_clean": MTARD's T_nat(x)
    )


class FairMTARD(ClassReweighting, MTARD):
    name = "fair-mtard"
    citation = CITATION
    Params = FairMTARDParams
    space = {**MTARD.space, "fair_beta": Uniform(0.0, 4.0)}
    _weights: Tensor | None = None

    def configure_teacher_roles(self, params: FairMTARDParams) -> tuple[str, ...]:
        return ("robust",) if params.natural_target == "robust_adv" else ("robust", "natural")

    def configure_needs(self, params: FairMTARDParams) -> frozenset[str]:
        if params.natural_target == "robust_adv":
            return frozenset({"s_adv", "s_nat", "t_adv"})
        return type(self).needs

    def _kl(self, student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
        w = self._weights.to(student_logits.dtype)
        if self.params.kl_reduction == "mean":
            return (w * rslad_per_example(student_logits, teacher_probs)).sum() / student_logits.numel()
        return (w * kl_div(student_logits, teacher_probs, "none")).mean()

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        self._weights = self.example_weights(y, out.require("s_adv").shape[1])
        if self.params.natural_target == "robust_adv":
            out = replace(out, teachers={**out.teachers, "natural": {"t_nat": out.require("t_adv")}})
        return super().loss(out, y, progress)


@hookimpl
def register_methods(register):
    register(FairMTARD)
