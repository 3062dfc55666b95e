"""The one place a `Trainer` is assembled. Cell training (`rkdbench.run.train`), teacher builds
(`rkdbench.teachers.build`), the pass count of a cost estimate (`rkdbench.cost.estimate`) and calibration
(`rkdbench.cost.calibration.measure`) all call `build_trainer` with the networks and splits they made, so what a
training run is given, and how, is decided here once; what the run counted is read back with `Trainer.pass_counts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..config import Protocol
from ..contracts.method import Method
from ..data import Splits
from .engine import Trainer
from .setup import TrainSetup

__all__ = ["build_trainer", "EpochCallback", "ProgressCallback"]

EpochCallback = Callable[[int, dict[str, float]], None]  # (0-based epoch, its metrics), after its checkpoint
ProgressCallback = Callable[[int, int, dict[str, float]], None]  # (epochs done, epochs, the last epoch's metrics)


def build_trainer(
    protocol: Protocol,
    method: Method,
    student: nn.Module,
    splits: Splits,
    *,
    device: torch.device,
    workdir: Path,
    teachers: Mapping[str, nn.Module] | None = None,
    seed: int = 0,
    run_id: str = "",
    on_epoch: EpochCallback | None = None,
    progress: ProgressCallback | None = None,
) -> Trainer:
    """A `Trainer` for `student` under `protocol`'s `[train]` with `method` (a fresh object: training changes its
    state), `teachers` by role (the method's first role is the primary; none for a teacher build), `splits` already
    on `device`, checkpoints in `workdir` (`fit()` resumes from one there). The caller seeds torch's global RNG
    and builds its networks in the order its numbers depend on; the trainer then builds the method's own networks
    (`Method.build_networks`) from the same stream."""
    setup = TrainSetup(
        protocol=protocol,
        method=method,
        student=student,
        teachers=dict(teachers or {}),
        splits=splits,
        seed=seed,
        device=device,
        workdir=workdir,
        run_id=run_id,
    )
    return Trainer(setup, on_epoch=on_epoch, progress=progress)
