"""`dgad`: misclassification-aware partitioning, error-corrective swapping of the teacher's logits, predictive
consistency; attack = AdaAD's."""

import math

import pytest
import torch

from rkdbench import Outputs
from rkdbench_plugins.methods.dgad import DGAD, swap_logits


def test_dgad_contract():
    m = DGAD()
    assert (m.params.beta, m.params.mnv2_legacy_product) == (1.0, False)
    assert m.needs == {"s_nat", "s_adv", "t_nat", "t_adv"} and m.teacher_roles == ("robust",)
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("gauss", "eval", 10, 0.25, {"s_adv", "t_adv"})


def test_swap_logits_only_where_asked():
    z = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    got = swap_logits(z, torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([True, False]))
    assert got.tolist() == [[3.0, 2.0, 1.0], [4.0, 5.0, 6.0]]


def _by_hand(hand, legacy=False):
    # T(x) = [[1, 1, 0], [0, 2, 1]], y = [0, 2]: row 0 is right (argmax 0, first of a tie), row 1 wrong (argmax 1)
    # clean swap, row 1: logits of y=2 and argmax=1 exchanged -> [0, 1, 2]
    clean = hand.kl(hand.softmax([0.0, 1.0, 2.0]), hand.softmax(hand.S_NAT[1].tolist())) / (1 + 1e-10)
    # T(x') = [[0.5, 2, 0], [0, 0.5, 3]]: row 0's true logit is beaten by class 1 -> [2, 0.5, 0]; row 1 kept
    adv = hand.kl(hand.softmax([2.0, 0.5, 0.0]), hand.softmax(hand.S[0].tolist())) / 1  # B - n = 1
    pcr = (
        sum(
            (a - b) ** 2
            for ra, rb in zip(hand.rows(hand.S), hand.rows(hand.S_NAT))
            for a, b in zip(hand.softmax(ra), hand.softmax(rb))
        )
        / 6
    )
    if legacy:
        return 0.5 * (0.5 * clean + 0.5) * adv + pcr
    return 0.5 * clean + 0.5 * adv + pcr


@pytest.mark.parametrize("legacy", [False, True])
def test_dgad_loss_by_hand(hand, legacy):
    out = Outputs(s_nat=hand.S_NAT, s_adv=hand.S, t_nat=hand.T, t_adv=hand.T_ADV)
    got = DGAD(mnv2_legacy_product=legacy).loss(out, hand.Y, hand.P)
    assert float(got.total) == pytest.approx(_by_hand(hand, legacy), rel=1e-5)
    assert float(got.parts["teacher_wrong"]) == 0.5


def test_dgad_all_misclassified_batch_is_finite(hand):
    y = torch.tensor([2, 0])  # the teacher is wrong on both
    out = Outputs(s_nat=hand.S_NAT, s_adv=hand.S, t_nat=hand.T, t_adv=hand.T_ADV)
    got = DGAD().loss(out, y, hand.P)
    assert math.isfinite(float(got.total)) and float(got.parts["kl_adv"]) == 0.0


def test_dgad_configured_batch_size_weights_a_short_batch_like_the_official_code(hand):
    out = Outputs(s_nat=hand.S_NAT, s_adv=hand.S, t_nat=hand.T, t_adv=hand.T_ADV)
    got = DGAD(configured_batch_size=4).loss(out, hand.Y, hand.P)
    clean, adv, pcr = (float(got.parts[k]) for k in ("kl_clean", "kl_adv", "pcr"))
    assert float(got.total) == pytest.approx(clean / 4 + 3 * adv / 4 + pcr, rel=1e-6)  # b = 4, n = 1
