"""`igdm`: the module is the batchmean KL between the teacher's and the student's logit differences across x' and
the mirror point x - delta; AdaAD+IGDM adds it with the linear ramp alpha * (e / E_ref), e counted from 1."""

import pytest
import torch

from rkdbench import Outputs, Progress
from rkdbench_plugins.methods.igdm import IGDM, igdm_loss

S_MIR = torch.tensor([[1.0, 1.0, 0.5], [0.0, 2.0, 0.5]])
T_MIR = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0]])


def diff(a, b):
    return [[x - y for x, y in zip(ra, rb)] for ra, rb in zip(a.tolist(), b.tolist())]


def igdm_by_hand(hand):
    t, s = diff(hand.T_ADV, T_MIR), diff(hand.S, S_MIR)
    return sum(hand.kl(hand.softmax(ti), hand.softmax(si)) for ti, si in zip(t, s)) / hand.B


def test_igdm_contract():
    m = IGDM()
    assert (m.params.alpha, m.params.ref_epochs, m.params.nat_weight, m.params.kl_reduction) == (
        1.0,
        None,
        0.0,
        "batchmean",
    )
    assert m.needs == {"s_adv", "t_adv", "s_mir", "t_mir", "s_nat"}  # S(x) runs for its BN side effect
    assert IGDM(clean_forward=False).needs == {"s_adv", "t_adv", "s_mir", "t_mir"}
    assert IGDM(nat_weight=0.5).needs >= {"s_nat", "t_nat"}
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("gauss", "eval", 10, 0.25, {"s_adv", "t_adv"})


def test_igdm_module_by_hand_and_teacher_difference_detached(hand):
    t_adv = hand.T_ADV.clone().requires_grad_(True)
    got = igdm_loss(hand.S, S_MIR, t_adv, T_MIR)
    assert float(got) == pytest.approx(igdm_by_hand(hand), rel=1e-5)
    assert not got.requires_grad  # only the teacher required grad, and its difference is detached


def test_igdm_loss_ramps_linearly_from_epoch_one(hand):
    out = Outputs(s_adv=hand.S, t_adv=hand.T_ADV, s_mir=S_MIR, t_mir=T_MIR)
    adv = sum(hand.kl(hand.softmax(t), hand.softmax(s)) for t, s in zip(hand.rows(hand.T_ADV), hand.rows(hand.S))) / 2
    module = igdm_by_hand(hand)
    got = IGDM().loss(out, hand.Y, Progress(epoch=1, epochs=4)).total  # e = 2 of E = 4
    assert float(got) == pytest.approx(adv + 0.5 * module, rel=1e-5)
    official = IGDM(ref_epochs=200, alpha=20.0).loss(out, hand.Y, Progress(epoch=1, epochs=4)).total
    assert float(official) == pytest.approx(adv + 20 * 2 / 200 * module, rel=1e-5)
