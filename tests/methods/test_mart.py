"""`mart`: CE attack; BCE + beta * (1/B) sum KL(p(x) || p(x')) (1 - p_y(x)), target not detached."""

import math

import pytest

from rkdbench import Outputs
from rkdbench_plugins.methods.mart import MART


def test_mart_contract():
    m = MART()
    assert m.params.beta == 6.0
    assert m.needs == {"s_nat", "s_adv"} and not m.uses_teacher
    a = m.attack
    assert (a.init, a.bn, a.steps, a.needs) == ("gauss", "eval", 10, {"s_adv"})
    assert a.step_size == pytest.approx(0.007 / 0.031)


def test_mart_attack_objective_is_ce(hand):
    expected = [hand.ce(r, y) for r, y in zip(hand.rows(hand.S), hand.Y.tolist())]
    assert MART().attack_objective(Outputs(s_adv=hand.S), hand.Y).tolist() == pytest.approx(expected, rel=1e-6)


def mart_by_hand(hand, beta):
    s, sn, y = hand.rows(hand.S), hand.rows(hand.S_NAT), hand.Y.tolist()
    bce = robust = 0.0
    for i in range(2):
        p_adv, p_nat = hand.softmax(s[i]), hand.softmax(sn[i])
        wrong = max(p for k, p in enumerate(p_adv) if k != y[i])
        bce += hand.ce(s[i], y[i]) - math.log(1.0001 - wrong + 1e-12)
        kl = sum(pn * (math.log(pn) - math.log(pa + 1e-12)) for pn, pa in zip(p_nat, p_adv))
        robust += kl * (1.0000001 - p_nat[y[i]])
    return bce / 2 + beta * robust / 2


@pytest.mark.parametrize("beta", [6.0, 5.0])
def test_mart_loss_by_hand(hand, beta):
    got = MART(beta=beta).loss(Outputs(s_adv=hand.S, s_nat=hand.S_NAT), hand.Y, hand.P).total
    assert float(got) == pytest.approx(mart_by_hand(hand, beta), rel=1e-5)


def test_mart_clean_branch_receives_gradient(hand):
    s_nat = hand.S_NAT.clone().requires_grad_(True)
    MART().loss(Outputs(s_adv=hand.S, s_nat=s_nat), hand.Y, hand.P).total.backward()
    assert s_nat.grad is not None and float(s_nat.grad.abs().sum()) > 0  # target and weight not detached
