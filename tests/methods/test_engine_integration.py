"""Every new method runs one real engine step (tiny CNNs, 32 digits-sized inputs): the engine computes exactly the
passes it declares (extra teacher roles included), the loss is finite and reaches the student's weights, and
`on_step_end` accepts the result. Classes are instantiated directly (entry points are added by the owner)."""

import math

import pytest
import torch

import rkdbench
from rkdbench import Progress
from rkdbench_plugins.methods.adaad import AdaAD
from rkdbench_plugins.methods.advfunmatch import AdvFunMatch
from rkdbench_plugins.methods.akd import AKD
from rkdbench_plugins.methods.dgad import DGAD
from rkdbench_plugins.methods.fair_ard import FairARD
from rkdbench_plugins.methods.fair_iad import FairIAD
from rkdbench_plugins.methods.fair_mtard import FairMTARD
from rkdbench_plugins.methods.fair_rslad import FairRSLAD
from rkdbench_plugins.methods.iad import IAD, IADII
from rkdbench_plugins.methods.igdm import IGDM
from rkdbench_plugins.methods.kd import KD
from rkdbench_plugins.methods.mart import MART
from rkdbench_plugins.methods.mtard import MTARD
from rkdbench_plugins.methods.peeraid import PeerAiD
from rkdbench_plugins.methods.rsnl import RSNL
from rkdbench_plugins.methods.saad import SAAD
from rkdbench_plugins.methods.standard import Standard
from rkdbench_plugins.methods.trades import TRADES

CASES = [
    (Standard, {}),
    (KD, {}),
    (TRADES, {}),
    (MART, {}),
    (IAD, {"begin": 0}),
    (IADII, {"begin": 0}),
    (AKD, {"ensemble": 2}),
    (AdaAD, {"alpha": 0.5}),
    (AdvFunMatch, {}),
    (RSNL, {}),
    (MTARD, {}),
    (MTARD, {"balance_temperature": True}),
    (IGDM, {"nat_weight": 0.5}),
    (SAAD, {"clean_weight": 0.5}),
    (DGAD, {}),
    (FairARD, {"alpha": 0.5}),
    (FairRSLAD, {}),
    (FairIAD, {"begin": 0}),
    (FairMTARD, {}),
    (FairMTARD, {"natural_target": "natural_clean"}),
    (PeerAiD, {}),
]


@pytest.mark.parametrize("cls,overrides", CASES, ids=[f"{c.name}{'+' if o else ''}" for c, o in CASES])
def test_one_engine_step(cls, overrides):
    torch.manual_seed(0)
    from rkdbench.config import load_protocol
    from rkdbench.data import Splits
    from rkdbench.training.build import build_trainer

    protocol = load_protocol("digits-linf", {"train.lr": 0.01})
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    student = rkdbench.create("architecture", "cnn-tiny")
    method = cls(**overrides)
    teachers = {role: rkdbench.create("architecture", "cnn-tiny").eval() for role in method.teacher_roles}
    splits = Splits((x, y), (x, y), (x, y), 10)
    trainer = build_trainer(
        protocol, method, student, splits, device=torch.device("cpu"), workdir=None, teachers=teachers
    )
    progress = Progress(0, 1)
    losses = trainer.training_step(x, y, progress)
    assert math.isfinite(float(losses.total.detach()))
    trainer.optimizer.zero_grad()
    losses.total.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in student.parameters())
    method.on_step_end(losses, progress)
    assert all(isinstance(v, torch.Tensor) for v in method.state.values())
