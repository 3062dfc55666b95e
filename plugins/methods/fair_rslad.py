"""`fair-rslad`: Fair-RSLAD (Yue et al., NeurIPS 2023, NISP-official/Fair-ARD `Fair-RSLAD.py`): RSLAD with class
weights from per-class robustness during the attack (see `rkdbench_plugins.methods.fair_weights`).

Attack: RSLAD's (KL(T(x) || S(x')), Gauss start, 10 steps of eps/4, student BN **eval**; kappa counted in eval mode).
Loss: RSLAD's element-wise /C form with every example multiplied by w_{y_i}:
    5/6 * (1/(B*C)) sum_i w_{y_i} r(S(x'_i), T(x_i))  +  1/6 * (1/(B*C)) sum_i w_{y_i} r(S(x_i), T(x_i)),
    r(s, t) = sum_c (-log p_s * p_t + log(p_t + 1e-5) * p_t)
Official: fair_eps = 0 (the script adds nothing before the power, so a class never classified correctly at any
iterate gives NaN weights); set `fair_eps = 1e-5` (the other three scripts' value) for short or tiny runs.
300 epochs, lr x0.1 at 215, 260, 285, Nesterov SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkdbench import Losses, Outputs, Progress, Uniform, hookimpl
from rkdbench_plugins.methods.fair_ard import CITATION
from rkdbench_plugins.methods.fair_weights import CLASS_WEIGHTS_DOC, ClassReweighting, FairParams
from rkdbench_plugins.methods.rslad import RSLAD, RSLADParams

__all__ = ["FairRSLAD", "FairRSLADParams", "rslad_per_example"]

__doc__ = f"{__doc__}\n{CLASS_WEIGHTS_DOC}"


@dataclass(frozen=True)
class FairRSLADParams(FairParams, RSLADParams):
    fair_eps: float = 0.0


def rslad_per_example(student_logits: Tensor, teacher_probs: Tensor) -> Tensor:
    """Per-example sum over classes of RSLAD's element-wise term (-log p_S * p_T + log(p_T + 1e-5) * p_T)."""
    log_p_s = F.log_softmax(student_logits, dim=1)
    return (-log_p_s * teacher_probs + torch.log(teacher_probs + 1e-5) * teacher_probs).sum(dim=1)


class FairRSLAD(ClassReweighting, RSLAD):
    name = "fair-rslad"
    citation = CITATION
    Params = FairRSLADParams
    space = {**RSLAD.space, "fair_beta": Uniform(0.0, 4.0)}

    def loss(self, out: Outputs, y: Tensor, progress: Progress) -> Losses:
        p = self.params
        s_adv, s_nat = out.require("s_adv"), out.require("s_nat")
        b, num_classes = s_adv.shape
        w = self.example_weights(y, num_classes).to(s_adv.dtype)
        target = F.softmax(out.require("t_nat") / p.temperature, dim=1)
        adv = (w * rslad_per_example(s_adv / p.temperature, target)).sum() / (b * num_classes)
        nat = (w * rslad_per_example(s_nat / p.temperature, target)).sum() / (b * num_classes)
        total = p.loss_scale * (p.adv_weight * adv + p.nat_weight * nat)
        return Losses(total=total, parts={"kl_adv": adv.detach(), "kl_nat": nat.detach()})


@hookimpl
def register_methods(register):
    register(FairRSLAD)
