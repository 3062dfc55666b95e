"""`trades`: attack maximizes KL(S(x) || S(x')); loss CE(S(x), y) + beta * batchmean KL, gradient through both."""

import pytest
import torch
import torch.nn.functional as F

from rkdbench import Outputs
from rkdbench_plugins.methods.trades import TRADES


def test_trades_contract():
    m = TRADES()
    assert m.params.beta == 6.0
    assert m.needs == {"s_nat", "s_adv"} and not m.uses_teacher
    a = m.attack
    assert (a.init, a.bn, a.steps, a.needs, a.gauss_std) == ("gauss", "eval", 10, {"s_adv", "s_nat"}, 0.001)
    assert a.step_size == pytest.approx(0.007 / 0.031)


def test_trades_attack_objective_is_per_example_kl_to_own_clean_output(hand):
    s, sn = hand.rows(hand.S), hand.rows(hand.S_NAT)
    expected = [hand.kl(hand.softmax(sn[i]), hand.softmax(s[i])) for i in range(2)]
    got = TRADES().attack_objective(Outputs(s_adv=hand.S, s_nat=hand.S_NAT), hand.Y)
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_trades_loss_by_hand(hand):
    s, sn, y = hand.rows(hand.S), hand.rows(hand.S_NAT), hand.Y.tolist()
    ce = sum(hand.ce(sn[i], y[i]) for i in range(2)) / 2
    kl = sum(hand.kl(hand.softmax(sn[i]), hand.softmax(s[i])) for i in range(2)) / 2
    got = TRADES().loss(Outputs(s_adv=hand.S, s_nat=hand.S_NAT), hand.Y, hand.P)
    assert float(got.total) == pytest.approx(ce + 6.0 * kl, rel=1e-5)
    got = TRADES(beta=1.0).loss(Outputs(s_adv=hand.S, s_nat=hand.S_NAT), hand.Y, hand.P)
    assert float(got.total) == pytest.approx(ce + kl, rel=1e-5)


def test_trades_kl_target_is_not_detached(hand):
    s_nat = hand.S_NAT.clone().requires_grad_(True)
    TRADES().loss(Outputs(s_adv=hand.S, s_nat=s_nat), hand.Y, hand.P).total.backward()
    ce_only = torch.autograd.functional.jacobian(lambda z: F.cross_entropy(z, hand.Y), hand.S_NAT)
    assert not torch.allclose(s_nat.grad, ce_only)  # the KL term also pushes S(x)
