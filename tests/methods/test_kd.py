"""`kd`: Hinton KD on clean inputs, alpha * tau^2 * batchmean KL + (1 - alpha) * CE."""

import pytest

from rkdbench import Outputs
from rkdbench_plugins.methods.kd import KD


def test_kd_defaults_and_contract():
    m = KD()
    assert (m.params.temperature, m.params.alpha, m.params.kl_reduction) == (4.0, 0.9, "batchmean")
    assert m.needs == {"s_nat", "t_nat"} and m.attack is None and m.teacher_roles == ("robust",)


@pytest.mark.parametrize("tau,alpha", [(4.0, 0.9), (1.0, 0.5)])
def test_kd_loss_by_hand(hand, tau, alpha):
    m = KD(temperature=tau, alpha=alpha)
    s, t, y = hand.rows(hand.S_NAT), hand.rows(hand.T), hand.Y.tolist()
    kd = sum(hand.kl(hand.softmax(t[i], tau), hand.softmax(s[i], tau)) for i in range(2)) / 2
    ce = sum(hand.ce(s[i], y[i]) for i in range(2)) / 2
    got = m.loss(Outputs(s_nat=hand.S_NAT, t_nat=hand.T), hand.Y, hand.P).total
    assert float(got) == pytest.approx(alpha * tau * tau * kd + (1 - alpha) * ce, rel=1e-5)


def test_kd_mean_reduction_divides_by_classes(hand):
    m = KD(temperature=1.0, alpha=1.0, kl_reduction="mean")
    s, t = hand.rows(hand.S_NAT), hand.rows(hand.T)
    expected = sum(hand.kl(hand.softmax(t[i]), hand.softmax(s[i])) for i in range(2)) / (hand.B * hand.C)
    assert float(m.loss(Outputs(s_nat=hand.S_NAT, t_nat=hand.T), hand.Y, hand.P).total) == pytest.approx(
        expected, rel=1e-5
    )
