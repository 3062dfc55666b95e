"""`rsnl`: the pure loss on a constructed case, the strongest-wrong-class margin, and `training_step` on a linear
student whose input gradient is known in closed form (W_y - W_j^)."""

import math

import pytest
import torch
from torch import nn

from rkdbench import Progress
from rkdbench.contracts.method import StepContext
from rkdbench_plugins.methods.rsnl import RSNL, rsnl_loss, strongest_wrong_margin

Z_S = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
Z_T = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
Y = torch.tensor([0, 2])
GRAD = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])


def by_hand(hand, zs, zt, y, grad_norm2, lambda_kd=1.0, tau=4.0, lambda_conf=0.5, lambda_grad=1e-3):
    b = len(zs)
    ce = sum(hand.ce(zs[i], y[i]) for i in range(b)) / b
    kd = sum(hand.kl(hand.softmax(zt[i], tau), hand.softmax(zs[i], tau)) for i in range(b)) / b
    conf = (
        sum(
            sum(max(0.0, (zt[i][y[i]] - zt[i][j]) - (zs[i][y[i]] - zs[i][j])) for j in range(len(zs[i])) if j != y[i])
            for i in range(b)
        )
        / b
    )
    grad = sum(grad_norm2) / b
    return ce + lambda_kd * tau * tau * kd + lambda_conf * conf + lambda_grad * grad, conf, grad


def test_rsnl_contract():
    m = RSNL()
    p = m.params
    assert (p.lambda_kd, p.temperature, p.lambda_conf, p.lambda_grad) == (1.0, 4.0, 0.5, 1e-3)
    assert m.attack is None and m.teacher_roles == ("robust",) and callable(m.training_step)


def test_strongest_wrong_margin():
    # example 0: y = 0, strongest wrong = 1 -> 2 - 1; example 1: y = 2, strongest wrong = 1 -> 1 - 3
    assert strongest_wrong_margin(Z_S, Y).tolist() == [1.0, -2.0]


def test_rsnl_pure_loss_on_constructed_case(hand):
    expected, conf, grad = by_hand(hand, Z_S.tolist(), Z_T.tolist(), Y.tolist(), [5.0, 2.0])
    assert (conf, grad) == (3.0, 3.5)  # margins: [0,1,3] vs teacher [0,3,3] -> 2; [1,-2,0] vs [2,1,0] -> 1 + 3
    got = rsnl_loss(Z_S, Z_T, GRAD, Y)
    assert float(got.total) == pytest.approx(expected, rel=1e-5)
    assert float(got.parts["conf"]) == pytest.approx(3.0) and float(got.parts["grad_norm2"]) == pytest.approx(3.5)
    confident = rsnl_loss(Z_T * 2, Z_T, GRAD, Y)  # student margins are twice the teacher's: no confidence penalty
    assert float(confident.parts["conf"]) == 0.0


def test_rsnl_training_step_on_a_linear_student(hand):
    torch.manual_seed(0)
    student, teacher = nn.Linear(4, 3, bias=False), nn.Linear(4, 3, bias=False)
    x = torch.rand(2, 4)
    ctx = StepContext(
        student=student, teachers={"robust": teacher}, progress=Progress(0, 1), eps=0.1, norm="Linf", attack=None
    )
    m = RSNL(lambda_grad=0.1)
    losses = m.training_step((x, Y), ctx)
    W, zs, zt = student.weight.detach(), student(x).tolist(), teacher(x).tolist()
    norms = []
    for i, y in enumerate(Y.tolist()):
        j = max((k for k in range(3) if k != y), key=lambda k: zs[i][k])
        norms.append(float(((W[y] - W[j]) ** 2).sum()))
    expected, _, grad = by_hand(hand, zs, zt, Y.tolist(), norms, lambda_grad=0.1)
    assert float(losses.parts["grad_norm2"]) == pytest.approx(grad, rel=1e-5)
    assert float(losses.total.detach()) == pytest.approx(expected, rel=1e-5)
    losses.total.backward()  # double backprop reaches the weights; the teacher gets nothing
    assert student.weight.grad is not None and math.isfinite(float(student.weight.grad.sum()))
    assert teacher.weight.grad is None
