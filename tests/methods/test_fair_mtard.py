"""`fair-mtard`: MTARD's adaptive weights on class-weighted RSLAD-form terms; by default (as coded) the natural
term's target is the robust teacher at x', so only the robust teacher is needed."""

import pytest
import torch

from rkdbench import Outputs
from rkdbench.errors import ConfigError
from rkdbench_plugins.methods.fair_mtard import FairMTARD


def test_fair_mtard_roles_follow_the_natural_target():
    m = FairMTARD()
    assert m.teacher_roles == ("robust",) and m.needs == {"s_adv", "s_nat", "t_adv"}
    assert (m.attack.init, m.attack.bn, m.params.eta, m.params.nesterov) == ("gauss", "eval", 0.025, True)
    intended = FairMTARD(natural_target="natural_clean")
    assert intended.teacher_roles == ("robust", "natural") and "natural:t_nat" in intended.needs
    with pytest.raises(ConfigError, match="natural_target"):
        FairMTARD(natural_target="clean")


def test_fair_mtard_loss_by_hand(hand):
    m = FairMTARD()
    m.state.update(
        w=torch.tensor([2.0, 1.0, 0.5]),
        kappa_sum=torch.zeros(3, dtype=torch.float64),
        seen=torch.zeros((), dtype=torch.float64),
    )

    w = [2.0, 0.5]
    adv = sum(w[i] * hand.rslad_term(hand.T_ADV[i].tolist(), hand.S[i].tolist()) for i in range(2)) / 6
    nat = (
        sum(w[i] * hand.rslad_term(hand.T_ADV[i].tolist(), hand.S_NAT[i].tolist()) for i in range(2)) / 6
    )  # target T_adv(x'), the official bug
    got = m.loss(Outputs(s_adv=hand.S, s_nat=hand.S_NAT, t_adv=hand.T_ADV), hand.Y, hand.P)
    # first batch: the losses are their own reference (r = 1, 1), so w_nat stays 0.5
    assert float(got.total) == pytest.approx(0.5 * adv + 0.5 * nat, rel=1e-5)
    assert float(got.parts["kl_adv"]) == pytest.approx(adv, rel=1e-5)
