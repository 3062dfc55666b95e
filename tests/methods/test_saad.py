"""`saad`: the first-order teacher proxy of the attack, the entropy weights (unnormalized, scale 5) and the outer loss
with the IGDM term, against hand-computed values; one training step runs the official passes."""

import math

import pytest
import torch

from rkdbench import Progress
from rkdbench_plugins.methods.saad import SAAD, SAADParams, renyi_entropy, saad_loss, taylor_teacher

S_MIR = torch.tensor([[1.0, 1.0, 0.5], [0.0, 2.0, 0.5]])
T_MIR = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0]])


def test_saad_defaults_are_official():
    p = SAAD().params
    assert (p.lambda_inner, p.igdm_alpha, p.clean_weight, p.entropy_scale, p.gamma, p.clean_forward) == (
        1,
        1,
        0,
        5,
        1,
        True,
    )
    a = SAAD().attack
    assert (a.init, a.bn, a.steps, a.step_size) == ("gauss", "eval", 10, 0.25)


def test_taylor_teacher_moves_only_the_true_logit_and_carries_gradient(hand):
    z, y = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([0])
    g, x = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.1, 0.2]])
    x_adv = torch.tensor([[0.2, 0.1]], requires_grad=True)
    proxy = taylor_teacher(z, g, x, x_adv, y, lambda_inner=1.0)
    assert proxy.tolist()[0] == pytest.approx([1.15, 2.0, 0.0])  # 0.5 * 0.1 + (-1) * (-0.1) = 0.15
    # d/dx' KL(softmax(proxy) || q) = p_y * (log p_y - log q_y - KL) * lambda * g
    q_logits = [0.0, 1.0, 0.0]
    kl = torch.sum(
        torch.softmax(proxy, 1) * (torch.log_softmax(proxy, 1) - torch.log_softmax(torch.tensor([q_logits]), 1))
    )
    (grad,) = torch.autograd.grad(kl, x_adv)
    p, q = hand.softmax([1.15, 2.0, 0.0]), hand.softmax(q_logits)
    d = p[0] * (math.log(p[0]) - math.log(q[0]) - hand.kl(p, q))
    assert grad.tolist()[0] == pytest.approx([d * 0.5, -d], rel=1e-5)


def test_renyi_entropy_orders():
    probs = torch.tensor([[0.5, 0.25, 0.25]])
    assert float(renyi_entropy(probs, 1.0)) == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)), rel=1e-6)
    assert float(renyi_entropy(probs, 2.0)) == pytest.approx(-math.log(0.25 + 2 * 0.0625), rel=1e-6)


@pytest.mark.parametrize("clean_weight", [0.0, 0.5])
def test_saad_loss_by_hand(hand, clean_weight):
    p = SAADParams(clean_weight=clean_weight)
    ramp = 0.25
    got = saad_loss(hand.S, S_MIR, hand.S_NAT, hand.T_ADV, T_MIR, hand.T, ramp, p).total
    h = [-sum(q * math.log(q) for q in hand.softmax(r)) for r in hand.rows(hand.T_ADV)]
    w = [5 * (hi - min(h)) for hi in h]
    wbar = [(wi - min(w)) / (max(w) - min(w) + 1e-8) for wi in w]
    expected = 0.0
    for i in range(2):
        a = hand.kl(hand.softmax(hand.T_ADV[i].tolist()), hand.softmax(hand.S[i].tolist()))
        m = hand.kl(hand.softmax((hand.T_ADV[i] - T_MIR[i]).tolist()), hand.softmax((hand.S[i] - S_MIR[i]).tolist()))
        c = hand.kl(hand.softmax(hand.T[i].tolist()), hand.softmax(hand.S_NAT[i].tolist()))
        expected += w[i] * (a + 1.0 * ramp * m) + clean_weight * (1 - wbar[i]) * c
    assert min(w) == 0.0 and float(got) == pytest.approx(expected / 2, rel=1e-5)


def test_saad_step_counts_the_official_passes():
    from tests.test_contract_extensions import _trainer

    trainer, x, y = _trainer(SAAD())
    losses = trainer.training_step(x, y, Progress(0, 1))
    n = x.shape[0]
    assert math.isfinite(float(losses.total.detach()))
    c = trainer.counter
    # attack 10 fwd+bwd, then S(x'), S(x - delta), S(x); teacher: T(x) fwd+bwd, T(x'), T(x - delta)
    assert (c.student_forward, c.student_backward, c.teacher_forward, c.teacher_backward) == (13 * n, 12 * n, 3 * n, n)
