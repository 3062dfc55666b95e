"""`adaad`: attack maximizes KL(T(x') || S(x')) through both networks; loss a * KL_adv + (1 - a) * KL_nat, 'mean'."""

import pytest

from rkdbench import Outputs
from rkdbench_plugins.methods.adaad import AdaAD


def kl_sum(hand, t, s):
    return [hand.kl(hand.softmax(ti), hand.softmax(si)) for ti, si in zip(hand.rows(t), hand.rows(s))]


def test_adaad_contract():
    m = AdaAD()
    assert (m.params.alpha, m.params.kl_reduction) == (1.0, "mean")
    assert m.needs == {"s_adv", "t_adv"} and m.teacher_roles == ("robust",)
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("gauss", "eval", 10, 0.25, {"s_adv", "t_adv"})
    assert AdaAD(alpha=0.5).needs == {"s_adv", "t_adv", "s_nat", "t_nat"}


def test_adaad_attack_objective_flows_through_the_teacher(hand):
    t_adv = hand.T_ADV.clone().requires_grad_(True)
    got = AdaAD().attack_objective(Outputs(s_adv=hand.S, t_adv=t_adv), hand.Y)
    assert got.tolist() == pytest.approx(kl_sum(hand, hand.T_ADV, hand.S), rel=1e-5)
    got.sum().backward()
    assert float(t_adv.grad.abs().sum()) > 0


def test_adaad_loss_mean_reduction(hand):
    got = AdaAD().loss(Outputs(s_adv=hand.S, t_adv=hand.T_ADV), hand.Y, hand.P).total
    assert float(got) == pytest.approx(sum(kl_sum(hand, hand.T_ADV, hand.S)) / (hand.B * hand.C), rel=1e-5)


def test_adaad_loss_with_natural_term_batchmean(hand):
    m = AdaAD(alpha=0.75, kl_reduction="batchmean")
    out = Outputs(s_adv=hand.S, t_adv=hand.T_ADV, s_nat=hand.S_NAT, t_nat=hand.T)
    expected = 0.75 * sum(kl_sum(hand, hand.T_ADV, hand.S)) / 2 + 0.25 * sum(kl_sum(hand, hand.T, hand.S_NAT)) / 2
    assert float(m.loss(out, hand.Y, hand.P).total) == pytest.approx(expected, rel=1e-5)
