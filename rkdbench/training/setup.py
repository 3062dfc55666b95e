"""What one training run is made of, apart from its loop: the device and GPU features it runs with, the setup it
is given (`TrainSetup`), the outcome `Trainer.fit()` returns (`TrainOutcome`: checkpoint paths, precision, cost),
the forward/backward counter behind the logged cost, the optimizer and learning-rate schedule built from the
protocol's `[train]` section, and the validation PGD accuracy that picks the best-val checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.base import predict
from ..attacks.pgd import pgd
from ..config import Protocol, TrainConfig
from ..contracts.method import MethodBase
from ..data import Splits
from ..tracking.schema import metric_key

__all__ = [
    "TrainSetup",
    "TrainOutcome",
    "Counter",
    "pick_device",
    "gpu_features",
    "robust_accuracy",
    "make_optimizer",
    "make_scheduler",
]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def gpu_features(train: TrainConfig, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last) for training from the protocol's `precision` / `channels_last`
    ("auto" = on for CUDA only; absent = off, so protocols written before the flags keep their numerics)."""

    def on(value: str, yes: str) -> bool:
        return value == yes or (value == "auto" and device.type == "cuda")

    return on(train.precision, "bf16"), on(train.channels_last, "on")


def robust_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str, steps: int, seed: int, batch_size: int = 500
) -> tuple[float, float]:
    """(clean, PGD-`steps` CE) accuracy in eval mode with a private generator: never touches the training RNG."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    clean = predict(model, x, batch_size) == y
    robust = torch.empty_like(clean)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = pgd(
            lambda xa, yb=yb: F.cross_entropy(model(xa), yb, reduction="none"),
            xb,
            eps=eps,
            step_size=eps / 4,
            steps=steps,
            norm=norm,
            init="uniform",
            generator=generator,
        )
        robust[i : i + batch_size] = predict(model, x_adv, batch_size) == yb
    model.train(was_training)
    return float(clean.float().mean()), float(robust.float().mean())


@dataclass
class TrainSetup:
    """Everything one cell's training needs; `splits` are already on `device`."""

    protocol: Protocol
    method: MethodBase  # a `Method` or a `StepMethod`
    student: nn.Module
    teachers: dict[str, nn.Module]  # role -> frozen teacher; the method's first role is the primary
    splits: Splits
    seed: int
    device: torch.device
    workdir: Path
    run_id: str = ""


@dataclass
class TrainOutcome:
    """What `fit()` leaves: the epochs, history and pass counts, the checkpoints it wrote (`swa_path` None
    without weight averaging) and the numerics it trained in (`precision` "bf16" or "fp32")."""

    last_epoch: int
    best_epoch: int
    history: list[dict[str, float]]
    cost: dict[str, float]
    last_path: Path
    best_path: Path
    swa_path: Path | None
    precision: str
    channels_last: bool
    resumed_from: int = 0


@dataclass
class Counter:
    """Forward/backward passes per training example (Python ints: counting costs no device sync)."""

    student_forward: int = 0
    student_backward: int = 0
    teacher_forward: int = 0
    teacher_backward: int = 0
    network_forward: int = 0  # the method's own networks (`Method.build_networks`)
    network_backward: int = 0

    def counts(self) -> dict[str, float]:
        """Pass name -> count; method-network passes only when a method has networks, so other runs log the same
        metrics as before."""
        return {k: float(v) for k, v in self.__dict__.items() if v or not k.startswith("network_")}

    def as_dict(self) -> dict[str, float]:
        return {metric_key("cost", k, kind=""): v for k, v in self.counts().items()}


def make_optimizer(settings: dict[str, Any], params) -> torch.optim.Optimizer:
    """From `Method.configure_optimizer`'s settings: the `[train]` fields as a dict, defaults filled in."""
    if settings["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
    return torch.optim.SGD(
        params,
        lr=settings["lr"],
        momentum=settings["momentum"],
        weight_decay=settings["weight_decay"],
        nesterov=settings["nesterov"],
    )


def make_scheduler(train: TrainConfig, optimizer: torch.optim.Optimizer):
    if train.schedule == "piecewise":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(train.milestones), train.gamma)
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
