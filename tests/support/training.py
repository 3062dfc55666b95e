"""Tiny trainers for engine tests: a `Trainer` (through `rkdbench.training.build`, as the harness builds one) on 32
seeded random digits-shaped points under `digits-linf` with a small budget, an epoch callback that interrupts a run
after its first epoch (a kill between checkpoint and the next epoch), and an exact comparison of checkpoint states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import rkdbench
from rkdbench.config import load_protocol
from rkdbench.data import Splits
from rkdbench.training.build import build_trainer
from rkdbench.training.engine import Trainer

__all__ = ["digits_trainer", "Interrupt", "kill_after_first_epoch", "states_equal"]


def digits_trainer(
    method: rkdbench.Method,
    workdir: Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    student: str = "cnn-tiny",
    seed: int = 0,
    n: int = 32,
) -> tuple[Trainer, torch.Tensor, torch.Tensor]:
    """(trainer, x, y): `method` training `student` on `n` random points (generator seed 1) with batch 16, one
    validation PGD step and `overrides`; a `cnn-tiny` teacher per role; torch's global RNG seeded with `seed` first."""
    torch.manual_seed(seed)
    protocol = load_protocol("digits-linf", {"train.batch_size": 16, "train.val_pgd_steps": 1, **(overrides or {})})
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(n, 1, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)
    network = rkdbench.create("architecture", student)
    teachers = {role: rkdbench.create("architecture", "cnn-tiny").eval() for role in method.teacher_roles}
    splits = Splits((x, y), (x, y), (x, y), 10)
    trainer = build_trainer(
        protocol, method, network, splits, device=torch.device("cpu"), workdir=workdir, teachers=teachers, seed=seed
    )
    return trainer, x, y


class Interrupt(Exception):
    """What `kill_after_first_epoch` raises: the run stops as a killed process would, after epoch 0's checkpoint."""


def kill_after_first_epoch(epoch: int, metrics: dict[str, float]) -> None:
    if epoch == 0:
        raise Interrupt


def states_equal(a: Any, b: Any) -> bool:
    """Checkpoint states equal to the bit: the same keys, lengths, tensor dtypes and values."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    return a == b
