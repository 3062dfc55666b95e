"""`peeraid`: Peer Adversarial Distillation (Jung, Jang, Song, Lee, CVPR 2024, arXiv 2403.06668), as in
jaewonalive/PeerAiD (main.py, attack_function.py).

No pretrained teacher: a peer P with the student's architecture is trained from scratch alongside the student, with
its own optimizer and learning-rate schedule (the protocol's, as in the official code: two identical SGDs), on the
student's adversarial examples. It is a method-owned network (`build_networks`): the engine steps its optimizer and
checkpoints its weights, buffers, optimizer and scheduler with the cell. One step:
1. p0 = P(x), P in eval mode, no gradient.
2. Attack: maximize sum_i KL(softmax(p0_i) || softmax(S(x'_i))) (RSLAD's attack with the peer's clean prediction as
   soft label): Gauss start, 10 steps of eps/4, student BN eval.
3. Peer, P in train mode: L_P = gamma1 * CE(P(x'), y) + gamma2 * tau_p^2 * KL_mean(S(x')/tau_p || P(x')/tau_p).
   As coded, the target softmax(S(x')) is **not** detached, so L_P also sends a reverse-KL gradient into S
   (`detach_peer_target = False`; the paper's intent is [U]).
4. Student: L_S = lambda1 * CE(S(x'), y) + lambda2 * tau^2 * KL_mean(P(x')/tau || S(x')/tau)
                  + lambda3 * tau^2 * KL_mean(S(x)/tau || S(x')/tau),
   P(x') detached, the self-target S(x) **not** detached (TRADES-like). KL_mean = `nn.KLDivLoss()`'s sum / (B*C).
5. (L_P + L_S).backward(), then the peer's and the student's optimizers step.
The official code runs S(x') twice in train mode (steps 3 and 4: same outputs, BN running statistics updated twice):
`repeat_adv_forward = True` reproduces it. Defaults: the CIFAR-10 README command (tau = 5, tau_p = 1, gamma1 = 1,
gamma2 = 0.1, lambda1 = 0, lambda2 = lambda3 = 1); CIFAR-100 uses gamma2 = 1. The peer always has the student's
architecture (the README's setting; a different peer architecture is not implemented) and a fresh initialization.
SWA of the student from the first lr decay is the protocol option `train.swa_start` (on in
`cifar10-linf-8-paper-peeraid`, reported as the `swa` selection next to the raw student); the official selection of
the best test-PGD checkpoint is not reproduced (the harness selects on held-out data only).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rkdbench import AttackSpec, LogUniform, Losses, StepContext, StepMethod, hookimpl, kl_div

__all__ = ["PeerAiD", "PeerAiDParams", "fresh_copy", "peer_loss", "student_loss"]


@dataclass(frozen=True)
class PeerAiDParams:
    tau: float = 5.0
    tau_peer: float = 1.0
    gamma1: float = 1.0
    gamma2: float = 0.1
    lambda1: float = 0.0
    lambda2: float = 1.0
    lambda3: float = 1.0
    detach_peer_target: bool = False  # official: the peer's KL target softmax(S(x')) carries gradient into S
    repeat_adv_forward: bool = True  # official: a second train-mode S(x') forward for the student's loss


def fresh_copy(model: nn.Module) -> nn.Module:
    """A network of `model`'s architecture with freshly initialized parameters and buffers (the torch RNG draws)."""
    peer = copy.deepcopy(model)
    for module in peer.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return peer


def _kl_mean(logits: Tensor, target_logits: Tensor, tau: float) -> Tensor:
    """tau^2 * KL(softmax(target/tau) || softmax(logits/tau)) with `nn.KLDivLoss()`'s sum / (B*C)."""
    return kl_div(logits, F.softmax(target_logits / tau, dim=1), "mean", temperature=tau) * tau * tau


def peer_loss(p_adv: Tensor, s_adv: Tensor, y: Tensor, p: PeerAiDParams) -> Tensor:
    """L_P = gamma1 * CE(P(x'), y) + gamma2 * tau_p^2 * KL_mean(S(x')/tau_p || P(x')/tau_p)."""
    target = s_adv.detach() if p.detach_peer_target else s_adv
    return p.gamma1 * F.cross_entropy(p_adv, y) + p.gamma2 * _kl_mean(p_adv, target, p.tau_peer)


def student_loss(s_adv: Tensor, s_nat: Tensor, p_adv: Tensor, y: Tensor, p: PeerAiDParams) -> Tensor:
    """L_S = lambda1 * CE(S(x'), y) + lambda2 * KD from the detached peer + lambda3 * self-distillation from S(x)."""
    return (
        p.lambda1 * F.cross_entropy(s_adv, y)
        + p.lambda2 * _kl_mean(s_adv, p_adv.detach(), p.tau)
        + p.lambda3 * _kl_mean(s_adv, s_nat, p.tau)
    )


class PeerAiD(StepMethod):
    name = "peeraid"
    citation = (
        "Jung, Jang, Song, Lee, 'PeerAiD: Improving Adversarial Distillation from a Specialized Peer Tutor', CVPR 2024"
    )
    teacher_roles = ()
    needs = frozenset({"s_adv", "s_nat"})  # documentation: training_step runs its own passes
    Params = PeerAiDParams
    space = {"tau": LogUniform(1.0, 20.0), "gamma2": LogUniform(0.01, 1.0), "lambda3": LogUniform(0.1, 10.0)}
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="gauss", bn="eval", steps=10, step_size=0.25)

    def build_networks(self, student: nn.Module) -> dict[str, nn.Module]:
        return {"peer": fresh_copy(student)}

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> Losses:
        x, y = batch
        p, student, peer = self.params, ctx.student, ctx.networks["peer"]
        n = x.shape[0]
        peer.eval()
        with torch.no_grad():
            target = F.softmax(peer(x), dim=1)
        x_adv = ctx.attack(x, y, lambda xa: kl_div(student(xa), target, "none"))
        peer.train()
        p_adv = peer(x_adv)
        s_adv = student(x_adv)
        l_peer = peer_loss(p_adv, s_adv, y, p)
        s_adv_student = student(x_adv) if p.repeat_adv_forward else s_adv
        s_nat = student(x)
        l_student = student_loss(s_adv_student, s_nat, p_adv, y, p)
        if ctx.count is not None:
            student_forwards = 2 + p.repeat_adv_forward
            student_backwards = student_forwards - (p.detach_peer_target and p.repeat_adv_forward)
            ctx.count(
                student_forward=student_forwards * n,
                student_backward=student_backwards * n,
                network_forward=2 * n,
                network_backward=n,
            )
        return Losses(
            total=l_peer + l_student, parts={"peer_loss": l_peer.detach(), "student_loss": l_student.detach()}
        )


@hookimpl
def register_methods(register):
    register(PeerAiD)
