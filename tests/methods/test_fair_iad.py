"""`fair-iad`: IAD-I with the class weight on the KD, introspection and CE terms."""

import pytest
import torch

from rkdbench import Outputs
from rkdbench_plugins.methods.fair_iad import FairIAD


def test_fair_iad_loss_by_hand(hand):
    m = FairIAD(begin=0, alpha_kd=0.75)
    assert (m.attack.bn, m.params.beta, m.params.nesterov) == ("train", 0.1, True)
    m.state.update(
        w=torch.tensor([2.0, 1.0, 0.5]),
        kappa_sum=torch.zeros(3, dtype=torch.float64),
        seen=torch.zeros((), dtype=torch.float64),
    )
    w = [2.0, 0.5]
    alpha = [hand.softmax(hand.T_ADV[i].tolist())[y] ** 0.1 for i, y in enumerate([0, 2])]
    kd = sum(w[i] * hand.kl(hand.softmax(hand.T[i].tolist()), hand.softmax(hand.S[i].tolist())) for i in range(2)) / 2
    intro = (
        sum(
            w[i] * (1 - alpha[i]) * hand.kl(hand.softmax(hand.S_NAT[i].tolist()), hand.softmax(hand.S[i].tolist()))
            for i in range(2)
        )
        / 2
    )
    ce = sum(w[i] * hand.ce(hand.S[i].tolist(), y) for i, y in enumerate([0, 2])) / 2  # on S(x'), as the script
    out = Outputs(s_adv=hand.S, s_nat=hand.S_NAT, t_nat=hand.T, t_adv=hand.T_ADV)
    got = m.loss(out, hand.Y, hand.P).total
    assert float(got) == pytest.approx(0.75 * kd + 0.75 * intro + 0.25 * ce, rel=1e-5)
    before = FairIAD(begin=5, alpha_kd=0.75)  # before `begin`: the KD term only
    before.state.update(m.state)
    assert float(before.loss(out, hand.Y, hand.P).total) == pytest.approx(0.75 * kd, rel=1e-5)
