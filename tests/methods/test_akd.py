"""`akd`: student-only CE attack (uniform, 7 steps, eval BN); soft CE to alpha * mean_k p_T_k(x') + (1 - alpha)
onehot."""

import math

import pytest

from rkdbench import Outputs
from rkdbench.errors import ConfigError
from rkdbench_plugins.methods.akd import AKD


def akd_by_hand(hand, teachers, alpha):
    s, y = hand.rows(hand.S), hand.Y.tolist()
    total = 0.0
    for i in range(2):
        probs = [sum(hand.softmax(t[i])[c] for t in teachers) / len(teachers) for c in range(3)]
        target = [alpha * probs[c] + (1 - alpha) * (1.0 if c == y[i] else 0.0) for c in range(3)]
        total += -sum(tc * math.log(ps) for tc, ps in zip(target, hand.softmax(s[i])))
    return total / 2


def test_akd_contract():
    m = AKD()
    assert (m.params.alpha, m.params.ensemble) == (0.9, 1)
    assert m.teacher_roles == ("robust",) and m.needs == {"s_adv", "t_adv"}
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("uniform", "eval", 7, 0.25, {"s_adv"})


def test_akd_attack_objective_is_student_only_ce(hand):
    expected = [hand.ce(r, y) for r, y in zip(hand.rows(hand.S), hand.Y.tolist())]
    assert AKD().attack_objective(Outputs(s_adv=hand.S), hand.Y).tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.9, 0.5, 1.0])
def test_akd_loss_by_hand(hand, alpha):
    got = AKD(alpha=alpha).loss(Outputs(s_adv=hand.S, t_adv=hand.T_ADV), hand.Y, hand.P).total
    assert float(got) == pytest.approx(akd_by_hand(hand, [hand.rows(hand.T_ADV)], alpha), rel=1e-5)


def test_akd_ensemble_averages_probabilities(hand):
    m = AKD(ensemble=3)
    assert m.teacher_roles == ("robust", "ensemble1", "ensemble2")
    assert m.needs == {"s_adv", "t_adv", "ensemble1:t_adv", "ensemble2:t_adv"}
    out = Outputs(
        s_adv=hand.S, t_adv=hand.T_ADV, teachers={"ensemble1": {"t_adv": hand.T2}, "ensemble2": {"t_adv": hand.T}}
    )
    expected = akd_by_hand(hand, [hand.rows(hand.T_ADV), hand.rows(hand.T2), hand.rows(hand.T)], 0.9)
    assert float(m.loss(out, hand.Y, hand.P).total) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="ensemble"):
        AKD(ensemble=0)


def test_akd_weak_variants_are_attack_overrides():
    m = AKD(attack_steps=1, attack_step_size=1.25)
    assert (m.attack.steps, m.attack.step_size, m.attack.init) == (1, 1.25, "uniform")
    assert AKD(attack_steps=3).attack.steps == 3
