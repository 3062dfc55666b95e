"""Fair-ARD's class weights (kappa over the attack iterates, normalized, clamped after the normalization, applied one
epoch late) and the `fair-ard` loss, against hand-computed values."""

import pytest
import torch

from rkdbench import Losses, Outputs, Progress
from rkdbench_plugins.methods.fair_ard import FairARD
from rkdbench_plugins.methods.fair_weights import fair_class_weights


def test_fair_ard_defaults_are_official():
    m = FairARD()
    p = m.params
    assert (p.fair_beta, p.fair_clip, p.fair_eps, p.nesterov) == (2.0, (5 / 6, 5 / 2), 1e-5, True)
    assert (p.temperature, p.alpha, p.kl_reduction) == (30.0, 1.0, "mean")
    assert (m.attack.init, m.attack.bn) == ("uniform", "train")  # ARD's attack: kappa counted in train mode
    assert m.configure_optimizer({"optimizer": "sgd", "nesterov": False})["nesterov"] is True


def test_class_weights_clamp_after_normalization():
    got = fair_class_weights(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), beta=2.0, eps=0.0, clip=(5 / 6, 5 / 2))
    # v = (1, 1/4, 1/16), 3 * v / sum(v) = (2.2857, 0.5714, 0.1429), then the clamp
    assert got.tolist() == pytest.approx([3 / 1.3125, 5 / 6, 5 / 6])


def test_kappa_counts_every_iterate_and_weights_lag_one_epoch(hand):
    m = FairARD()
    y = torch.tensor([0, 2])
    iterates = [
        torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]),  # both right
        torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]),  # only example 0
        torch.tensor([[0, 1.0, 0], [0, 0, 1.0]]),
    ]  # only example 1
    epoch_steps = 2
    for step in range(epoch_steps):
        for s_adv in iterates:
            m.attack_objective(Outputs(s_adv=s_adv), y)
        losses = m.loss(Outputs(s_adv=hand.S, t_nat=hand.T), y, Progress(0, 2, step, epoch_steps))
        assert m.state["w"].tolist() == [1.0, 1.0, 1.0]  # the first epoch uses w = 1
        m.on_step_end(losses, Progress(0, 2, step, epoch_steps))
    # kappa = (2, 2) per step, twice: class sums (4, 0, 4) over N = 4 examples, N/C = 4/3 -> (3, 0, 3)
    v = [(3 + 1e-5) ** -2, (0 + 1e-5) ** -2, (3 + 1e-5) ** -2]
    expected = [min(max(3 * vi / sum(v), 5 / 6), 5 / 2) for vi in v]
    assert m.state["w"].tolist() == pytest.approx(expected)
    assert m.state["kappa_sum"].tolist() == [0, 0, 0] and float(m.state["seen"]) == 0


def test_fair_ard_loss_weights_each_example(hand):
    m = FairARD()
    m.state.update(
        w=torch.tensor([2.0, 1.0, 0.5]),
        kappa_sum=torch.zeros(3, dtype=torch.float64),
        seen=torch.zeros((), dtype=torch.float64),
    )
    tau = 30.0
    per = [hand.kl(hand.softmax(hand.T[i].tolist(), tau), hand.softmax(hand.S[i].tolist(), tau)) for i in range(2)]
    expected = tau * tau * (2.0 * per[0] + 0.5 * per[1]) / (hand.B * hand.C)  # y = (0, 2)
    got = m.loss(Outputs(s_adv=hand.S.double(), t_nat=hand.T.double()), hand.Y, hand.P)  # float64: tau^2 = 900
    assert isinstance(got, Losses) and float(got.total) == pytest.approx(expected, rel=1e-6)
