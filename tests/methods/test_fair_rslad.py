"""`fair-rslad`: RSLAD's element-wise /C loss with each example weighted by its class weight; no 1e-5 in the weights."""

import math

import pytest
import torch

from rkdbench import Outputs
from rkdbench_plugins.methods.fair_rslad import FairRSLAD


def test_fair_rslad_contract():
    m = FairRSLAD()
    assert m.params.fair_eps == 0.0 and m.params.nesterov is True
    assert (m.attack.init, m.attack.bn, m.attack.needs) == ("gauss", "eval", {"s_adv", "t_nat"})


def test_fair_rslad_loss_by_hand(hand):
    m = FairRSLAD()
    m.state.update(w=torch.tensor([2.0, 1.0, 0.5]), kappa_sum=torch.zeros(3, dtype=torch.float64),
                   seen=torch.zeros((), dtype=torch.float64))

    def term(student, i):
        p_t, p_s = hand.softmax(hand.T[i].tolist()), hand.softmax(student[i].tolist())
        return sum(-math.log(ps) * pt + math.log(pt + 1e-5) * pt for ps, pt in zip(p_s, p_t))

    w = [2.0, 0.5]
    adv = sum(w[i] * term(hand.S, i) for i in range(2)) / 6
    nat = sum(w[i] * term(hand.S_NAT, i) for i in range(2)) / 6
    got = m.loss(Outputs(s_adv=hand.S, s_nat=hand.S_NAT, t_nat=hand.T), hand.Y, hand.P).total
    assert float(got) == pytest.approx(5 / 6 * adv + 1 / 6 * nat, rel=1e-5)
