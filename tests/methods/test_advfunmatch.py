"""`advfunmatch`: AdaAD's objective with a uniform start and the "strong" extra augmentation; batchmean loss."""

import pytest

from rkdbench import Outputs
from rkdbench.errors import ConfigError
from rkdbench_plugins.methods.advfunmatch import AdvFunMatch


def test_advfunmatch_contract():
    m = AdvFunMatch()
    assert m.extra_augment == "strong"
    assert (m.params.temperature, m.params.kl_reduction, m.params.kl_direction) == (
        1.0,
        "batchmean",
        "teacher||student",
    )
    assert m.needs == {"s_adv", "t_adv"} and m.teacher_roles == ("robust",)
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("uniform", "eval", 10, 0.25, {"s_adv", "t_adv"})


def test_advfunmatch_objective_and_loss_by_hand(hand):
    s, t = hand.rows(hand.S), hand.rows(hand.T_ADV)
    per = [hand.kl(hand.softmax(t[i]), hand.softmax(s[i])) for i in range(2)]
    t_adv = hand.T_ADV.clone().requires_grad_(True)
    got = AdvFunMatch().attack_objective(Outputs(s_adv=hand.S, t_adv=t_adv), hand.Y)
    assert got.tolist() == pytest.approx(per, rel=1e-5)
    got.sum().backward()
    assert float(t_adv.grad.abs().sum()) > 0  # the attack gradient flows through the teacher
    loss = AdvFunMatch().loss(Outputs(s_adv=hand.S, t_adv=hand.T_ADV), hand.Y, hand.P).total
    assert float(loss) == pytest.approx(sum(per) / 2, rel=1e-5)


def test_advfunmatch_temperature_and_direction(hand):
    s, t = hand.rows(hand.S), hand.rows(hand.T_ADV)
    tau = 2.0
    fwd = sum(hand.kl(hand.softmax(t[i], tau), hand.softmax(s[i], tau)) for i in range(2)) / 2
    rev = sum(hand.kl(hand.softmax(s[i], tau), hand.softmax(t[i], tau)) for i in range(2)) / 2
    out = Outputs(s_adv=hand.S, t_adv=hand.T_ADV)
    assert float(AdvFunMatch(temperature=tau).loss(out, hand.Y, hand.P).total) == pytest.approx(
        tau * tau * fwd, rel=1e-5
    )
    m = AdvFunMatch(temperature=tau, kl_direction="student||teacher")
    assert float(m.loss(out, hand.Y, hand.P).total) == pytest.approx(tau * tau * rev, rel=1e-5)
    with pytest.raises(ConfigError, match="kl_direction"):
        AdvFunMatch(kl_direction="sideways")
