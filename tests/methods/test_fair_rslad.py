"""`fair-rslad`: RSLAD's element-wise /C loss with each example weighted by its class weight; no 1e-5 in the weights."""

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
    m.state.update(
        w=torch.tensor([2.0, 1.0, 0.5]),
        kappa_sum=torch.zeros(3, dtype=torch.float64),
        seen=torch.zeros((), dtype=torch.float64),
    )

    w = [2.0, 0.5]
    adv = sum(w[i] * hand.rslad_term(hand.T[i].tolist(), hand.S[i].tolist()) for i in range(2)) / 6
    nat = sum(w[i] * hand.rslad_term(hand.T[i].tolist(), hand.S_NAT[i].tolist()) for i in range(2)) / 6
    got = m.loss(Outputs(s_adv=hand.S, s_nat=hand.S_NAT, t_nat=hand.T), hand.Y, hand.P).total
    assert float(got) == pytest.approx(5 / 6 * adv + 1 / 6 * nat, rel=1e-5)
