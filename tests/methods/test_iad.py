"""`iad` (IAD-I) and `iad-ii` (IAD-II): the reliability gate alpha_i = softmax(T(x'))[y]^beta switching on at
`begin`, the coded losses by hand, `begin_fraction`."""

import math

import pytest

from rkdbench import Outputs, Progress
from rkdbench_plugins.methods.iad import IAD, IADII, begin_epoch


def alphas(hand, beta=0.1):
    return [hand.softmax(r)[y] ** beta for r, y in zip(hand.rows(hand.T_ADV), hand.Y.tolist())]


def iad1_by_hand(hand, active, tau=1.0, alpha_kd=1.0, beta=0.1):
    s, sn, t, y = hand.rows(hand.S), hand.rows(hand.S_NAT), hand.rows(hand.T), hand.Y.tolist()
    a = alphas(hand, beta) if active else [1.0, 1.0]
    kd = sum(hand.kl(hand.softmax(t[i], tau), hand.softmax(s[i], tau)) for i in range(2)) / 2
    intro = sum((1 - a[i]) * hand.kl(hand.softmax(sn[i]), hand.softmax(s[i])) for i in range(2)) / 2
    ce = sum(hand.ce(sn[i], y[i]) for i in range(2)) / 2
    return alpha_kd * tau * tau * kd + alpha_kd * intro + (1 - alpha_kd) * ce


def iad1_out(hand, s_nat=None):
    return Outputs(s_adv=hand.S, s_nat=hand.S_NAT if s_nat is None else s_nat, t_nat=hand.T, t_adv=hand.T_ADV)


def test_iad_contract():
    m = IAD()
    p = m.params
    assert (p.temperature, p.alpha_kd, p.beta, p.begin, p.begin_fraction) == (1.0, 1.0, 0.1, 60, None)
    assert m.needs == {"s_adv", "s_nat", "t_nat", "t_adv"} and m.teacher_roles == ("robust",)
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("uniform", "train", 10, 0.25, {"s_adv"})


def test_iad_attack_objective_is_ce(hand):
    expected = [hand.ce(r, y) for r, y in zip(hand.rows(hand.S), hand.Y.tolist())]
    assert IAD().attack_objective(Outputs(s_adv=hand.S), hand.Y).tolist() == pytest.approx(expected, rel=1e-6)
    assert IADII().attack_objective(Outputs(s_adv=hand.S), hand.Y).tolist() == pytest.approx(expected, rel=1e-6)


def test_iad_gate_switches_on_at_begin(hand):
    m = IAD()
    before = m.loss(iad1_out(hand), hand.Y, Progress(epoch=59, epochs=200))
    at = m.loss(iad1_out(hand), hand.Y, Progress(epoch=60, epochs=200))
    assert float(before.total) == pytest.approx(iad1_by_hand(hand, active=False), rel=1e-5)
    assert float(before.parts["introspection"]) == 0.0 and float(before.parts["alpha_mean"]) == 1.0
    assert float(at.total) == pytest.approx(iad1_by_hand(hand, active=True), rel=1e-5)
    assert float(at.parts["alpha_mean"]) == pytest.approx(sum(alphas(hand)) / 2, rel=1e-6)
    assert float(at.total) > float(before.total)


def test_iad_full_formula_with_temperature_and_ce(hand):
    m = IAD(temperature=2.0, alpha_kd=0.75, beta=0.5)
    got = m.loss(iad1_out(hand), hand.Y, Progress(epoch=60, epochs=200)).total
    assert float(got) == pytest.approx(iad1_by_hand(hand, True, tau=2.0, alpha_kd=0.75, beta=0.5), rel=1e-5)


def test_iad_alpha_is_detached_and_introspection_target_is_not(hand):
    t_adv = hand.T_ADV.clone().requires_grad_(True)
    s_nat = hand.S_NAT.clone().requires_grad_(True)
    out = Outputs(s_adv=hand.S, s_nat=s_nat, t_nat=hand.T, t_adv=t_adv)
    IAD().loss(out, hand.Y, Progress(epoch=60, epochs=200)).total.backward()
    assert t_adv.grad is None
    assert float(s_nat.grad.abs().sum()) > 0


def test_iad_begin_fraction_replaces_begin(hand):
    assert begin_epoch(60, None, 10) == 60 and begin_epoch(60, 0.3, 10) == 3 and begin_epoch(40, 0.2, 200) == 40
    m = IAD(begin_fraction=0.3)
    off = m.loss(iad1_out(hand), hand.Y, Progress(epoch=2, epochs=10))
    on = m.loss(iad1_out(hand), hand.Y, Progress(epoch=3, epochs=10))
    assert float(off.total) == pytest.approx(iad1_by_hand(hand, active=False), rel=1e-5)
    assert float(on.total) == pytest.approx(iad1_by_hand(hand, active=True), rel=1e-5)


def iad2_by_hand(hand, active, tau=1.0, a1=0.5, a2=0.25, beta=0.1):
    s, sn, ta, ts, y = (
        hand.rows(hand.S),
        hand.rows(hand.S_NAT),
        hand.rows(hand.T_ADV),
        hand.rows(hand.T2),
        hand.Y.tolist(),
    )
    a = alphas(hand, beta) if active else [1.0, 1.0]
    ce = sum(hand.ce(s[i], y[i]) for i in range(2)) / 2
    kd_at = sum(a[i] * hand.kl(hand.softmax(ta[i], tau), hand.softmax(s[i], tau)) for i in range(2)) / 2
    intro = sum((1 - a[i]) * hand.kl(hand.softmax(sn[i]), hand.softmax(s[i])) for i in range(2)) / 2
    kd_st = sum(hand.kl(hand.softmax(ts[i], tau), hand.softmax(s[i], tau)) for i in range(2)) / 2
    return (1 - a1 - a2) * ce + a1 * tau * tau * (kd_at + intro) + a2 * tau * tau * kd_st


def iad2_out(hand):
    return Outputs(s_adv=hand.S, s_nat=hand.S_NAT, t_adv=hand.T_ADV, teachers={"natural": {"t_adv": hand.T2}})


def test_iad_ii_contract():
    m = IADII()
    p = m.params
    assert (p.temperature, p.alpha1, p.alpha2, p.beta, p.begin) == (1.0, 0.5, 0.25, 0.1, 40)
    assert m.teacher_roles == ("robust", "natural")
    assert m.needs == {"s_adv", "s_nat", "t_adv", "natural:t_adv"}
    assert (m.attack.init, m.attack.bn, m.attack.steps, m.attack.step_size) == ("uniform", "train", 10, 0.25)


def test_iad_ii_loss_by_hand_and_gate(hand):
    m = IADII()
    before = m.loss(iad2_out(hand), hand.Y, Progress(epoch=39, epochs=200)).total
    at = m.loss(iad2_out(hand), hand.Y, Progress(epoch=40, epochs=200)).total
    assert float(before) == pytest.approx(iad2_by_hand(hand, active=False), rel=1e-5)
    assert float(at) == pytest.approx(iad2_by_hand(hand, active=True), rel=1e-5)
    m = IADII(temperature=3.0, alpha1=0.4, alpha2=0.3, begin_fraction=0.5)
    got = m.loss(iad2_out(hand), hand.Y, Progress(epoch=5, epochs=10)).total
    assert float(got) == pytest.approx(iad2_by_hand(hand, True, tau=3.0, a1=0.4, a2=0.3), rel=1e-5)
    assert math.isfinite(float(got))
