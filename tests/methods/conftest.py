"""Hand-computed reference maths for the method tests: plain-Python `math` on lists (no torch), and the small
fixed logits every test uses."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from rkdbench import Progress


def softmax(row, tau=1.0):
    e = [math.exp(v / tau) for v in row]
    return [v / sum(e) for v in e]


def kl(p, q):
    """KL(p || q) = sum p log(p / q)."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def ce(row, label):
    return -math.log(softmax(row)[label])


def rslad_term(t_row, s_row):
    """RSLAD's element-wise KL summed over classes: sum (-log p_S * p_T + log(p_T + 1e-5) * p_T)."""
    p_t, p_s = softmax(t_row), softmax(s_row)
    return sum(-math.log(ps) * pt + math.log(pt + 1e-5) * pt for ps, pt in zip(p_s, p_t))


def rows(t):
    return [r for r in t.tolist()]


@pytest.fixture
def hand():
    return SimpleNamespace(
        softmax=softmax,
        kl=kl,
        ce=ce,
        rows=rows,
        rslad_term=rslad_term,
        S=torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]),  # student on x'
        S_NAT=torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]),  # student on x
        T=torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]),  # (robust) teacher on x
        T_ADV=torch.tensor([[0.5, 2.0, 0.0], [0.0, 0.5, 3.0]]),  # (robust) teacher on x'
        T2=torch.tensor([[3.0, 0.0, 0.5], [1.0, 1.0, 1.0]]),  # a second teacher
        Y=torch.tensor([0, 2]),
        B=2,
        C=3,
        P=Progress(epoch=0, epochs=1),
    )
