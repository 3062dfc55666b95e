"""`peeraid`: the peer's and the student's losses against hand-computed values, the non-detached peer target, a fresh
peer of the student's architecture, and one step that trains both networks."""

import math

import pytest
import torch
from torch import nn

from rkdbench import Progress
from rkdbench_plugins.methods.peeraid import PeerAiD, PeerAiDParams, fresh_copy, peer_loss, student_loss

P_ADV = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])


def kl_mean(hand, target, student, tau):
    return (
        tau
        * tau
        * sum(
            hand.kl(hand.softmax(t, tau), hand.softmax(s, tau)) for t, s in zip(hand.rows(target), hand.rows(student))
        )
        / (hand.B * hand.C)
    )


def test_peeraid_defaults_are_the_cifar10_readme_command():
    p = PeerAiD().params
    assert (p.tau, p.tau_peer, p.gamma1, p.gamma2, p.lambda1, p.lambda2, p.lambda3) == (5, 1, 1, 0.1, 0, 1, 1)
    assert (p.detach_peer_target, p.repeat_adv_forward) == (False, True)
    assert PeerAiD().teacher_roles == ()


def test_peer_and_student_losses_by_hand(hand):
    p = PeerAiDParams()
    ce_peer = (hand.ce(P_ADV[0].tolist(), 0) + hand.ce(P_ADV[1].tolist(), 2)) / 2
    assert float(peer_loss(P_ADV, hand.S, hand.Y, p)) == pytest.approx(
        ce_peer + 0.1 * kl_mean(hand, hand.S, P_ADV, 1.0), rel=1e-5
    )
    expected = kl_mean(hand, P_ADV, hand.S, 5.0) + kl_mean(hand, hand.S_NAT, hand.S, 5.0)
    assert float(student_loss(hand.S, hand.S_NAT, P_ADV, hand.Y, p)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("detach", [False, True])
def test_peer_target_gradient_reaches_the_student_only_when_not_detached(hand, detach):
    s_adv = hand.S.clone().requires_grad_(True)
    peer_loss(P_ADV.clone().requires_grad_(True), s_adv, hand.Y, PeerAiDParams(detach_peer_target=detach)).backward()
    reached = s_adv.grad is not None and float(s_adv.grad.abs().sum()) > 0
    assert reached is (not detach)


def test_fresh_copy_has_the_architecture_and_new_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 10))
    with torch.no_grad():
        net[1].running_mean.fill_(3.0)
    peer = fresh_copy(net)
    assert [type(m) for m in peer.modules()] == [type(m) for m in net.modules()]
    assert not torch.equal(peer[0].weight, net[0].weight) and not torch.equal(peer[3].weight, net[3].weight)
    assert float(peer[1].running_mean.abs().sum()) == 0.0


def test_one_step_trains_student_and_peer(tmp_path):
    from tests.test_contract_extensions import _trainer

    trainer, x, y = _trainer(PeerAiD(), tmp_path)
    peer = trainer.networks["peer"]
    losses = trainer.training_step(x, y, Progress(0, 1))
    losses.total.backward()
    assert all(q.grad is not None for q in peer.parameters())
    n = x.shape[0]
    c = trainer.counter
    assert (c.student_forward, c.student_backward, c.network_forward, c.network_backward) == (13 * n, 13 * n, 2 * n, n)
    assert math.isfinite(float(losses.total.detach()))
