"""Timing on this device: the engine's own `fit()` for a few short epochs on synthetic data of the dataset's
shape, and each evaluation attack at two point counts through a wrapper no attack can break, so that every
attack runs its full course on every point (seconds per batch = fixed + per point x points).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...config import AttackEntry, Cell, Protocol
from ...data import Splits
from ...tracking.schema import TRAIN_EPOCH_SECONDS, VAL_SECONDS
from .store import (
    CLOCKS,
    Calibration,
    Linear,
    TrainTiming,
    attack_key,
    dataset_of,
    first_stage_spec,
    per_point_key,
    teacher_arch,
    teacher_roles_of,
    train_key,
)

EPOCHS = 3  # the first is warm-up; the median of the others is kept
ROBUST_MARGIN = 10.0  # logit margin of the unbreakable wrapper (eps-balls move the scaled logits by far less)


class _Unbreakable(nn.Module):
    """The network's logits scaled down plus a fixed margin for class 0: its real forward and backward run, but no
    perturbation changes the prediction, so every attack spends on every point what it spends on a robust one."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("margin", ROBUST_MARGIN * torch.eye(num_classes)[0])

    def forward(self, x: Tensor) -> Tensor:
        return 1e-3 * self.model(x) + self.margin


def _network(name: str, dataset, device: torch.device, arch_kwargs: dict[str, Any] | None = None) -> nn.Module:
    from ...plugins import create

    return create(
        "architecture", name, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0], **(arch_kwargs or {})
    ).to(device)


def _synthetic(n: int, dataset, device: torch.device, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x = torch.rand(n, *dataset.input_shape, generator=generator).to(device)
    return x, torch.randint(0, dataset.num_classes, (n,), generator=generator).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device, clock: str) -> float:
    _sync(device)
    started = CLOCKS[clock]()
    fn()
    _sync(device)
    return CLOCKS[clock]() - started


def measure_training(cell: Cell, device: torch.device, steps: int, clock: str = "wall") -> TrainTiming:
    """Three epochs of `steps` steps of the engine's fit() on synthetic data; the first epoch is warm-up. The engine
    times training and validation in wall time; with the CPU clock each epoch's parts are scaled by the epoch's
    CPU / wall ratio (read at the end of every epoch)."""
    from ...contracts.build import fresh_method
    from ...plugins import create
    from ...training.build import build_trainer

    dataset = dataset_of(cell.protocol)
    data = copy.deepcopy(cell.protocol.data)
    batch = cell.protocol.train.batch_size
    data["train"]["epochs"] = EPOCHS
    protocol = Protocol(cell.protocol.name, data, cell.protocol.source, cell.protocol.overrides)
    generator = torch.Generator().manual_seed(0)
    val_points = min(batch, 64)
    train, val = (
        _synthetic(steps * batch, dataset, device, generator),
        _synthetic(val_points, dataset, device, generator),
    )
    splits = Splits(train=train, val=val, test=val, num_classes=dataset.num_classes)
    teachers = {}
    for role, teacher in teacher_roles_of(cell).items():
        card = create("teacher", teacher)
        teachers[role] = _network(card.architecture, dataset, device, card.arch_kwargs)
    torch.manual_seed(0)
    marks = [(time.perf_counter(), CLOCKS[clock]())]
    with (
        tempfile.TemporaryDirectory() as workdir,
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
    ):
        trainer = build_trainer(
            protocol,
            fresh_method(cell),
            _network(cell.student, dataset, device),
            splits,
            device=device,
            workdir=Path(workdir),
            teachers=teachers,
            progress=lambda *_: marks.append((time.perf_counter(), CLOCKS[clock]())),
        )
        marks[0] = (time.perf_counter(), CLOCKS[clock]())
        history = trainer.fit().history
    epochs = []
    for h, (wall0, clock0), (wall1, clock1) in zip(history, marks, marks[1:]):
        scale = (clock1 - clock0) / (wall1 - wall0)
        epochs.append(
            (
                h[TRAIN_EPOCH_SECONDS] * scale,
                h[VAL_SECONDS] * scale,
                (wall1 - wall0 - h[TRAIN_EPOCH_SECONDS] - h[VAL_SECONDS]) * scale,
            )
        )
    measured = epochs[1:]
    return TrainTiming(
        step=statistics.median(e[0] for e in measured) / steps,
        val_point=statistics.median(e[1] for e in measured) / val_points,
        epoch_rest=max(statistics.median(e[2] for e in measured), 0.0),
    )


def measure_attack(
    protocol: Protocol,
    entry: AttackEntry,
    model: nn.Module,
    dataset,
    device: torch.device,
    batch_size: int,
    points: int,
    clock: str = "wall",
) -> Linear:
    """Seconds per batch of the attack on the unbreakable wrapper, at `points // 4` and `points` points (one batch
    each): the two give its fixed cost per batch (AutoAttack's thousands of iterations cost Python time whatever
    the batch) and its cost per point."""
    from ...evaluation.evaluate import run_attack

    wrapped = _Unbreakable(model, dataset.num_classes).to(device).eval()
    n2 = max(min(points, batch_size), 2)
    n1 = max(n2 // 4, 1)
    x = torch.rand(n2, *dataset.input_shape, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.zeros(n2, dtype=torch.long, device=device)
    run = lambda n: run_attack(wrapped, protocol, entry, x[:n], y[:n], batch_size=batch_size)  # noqa: E731
    wrapped(x[:n1].clone().requires_grad_()).sum().backward()  # warm-up (kernels, allocator); a full AutoAttack is not
    return Linear.through(n1, _seconds(lambda: run(n1), device, clock), n2, _seconds(lambda: run(n2), device, clock))


def _per_point(fn: Callable[[Tensor, Tensor], object], dataset, device: torch.device, points: int, clock: str) -> float:
    x = torch.rand(points, *dataset.input_shape, generator=torch.Generator().manual_seed(2)).to(device)
    y = torch.zeros(points, dtype=torch.long, device=device)
    fn(x[:2], y[:2])  # warm-up
    return _seconds(lambda: fn(x, y), device, clock) / points


def calibrate_cells(
    cells: list[Cell],
    device: torch.device,
    calibration: Calibration,
    *,
    steps: int = 5,
    points: int = 16,
    redo: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Calibration:
    """Measure every combination of `cells` not yet in `calibration` (all of them with `redo`) and save it."""
    from ...attacks.base import preserved_rng
    from ...diagnostics.diagnose import diagnose
    from ...diagnostics.specialization import specialization_report
    from ...errors import ConfigError
    from ...evaluation.batching import CPU_BATCH_SIZE, choose_batch_size

    clock = calibration.identity["clock"]
    for cell in cells:
        key = train_key(cell)
        if redo or key not in calibration.train:
            with preserved_rng():
                timing = measure_training(cell, device, steps, clock)
            calibration.train[key] = asdict(timing)
            say(
                f"train {cell.variant} / {cell.student} / {cell.teacher}: {timing.step * 1e3:.1f} ms/step, "
                f"{timing.val_point * 1e3:.2f} ms/validation point, {timing.epoch_rest:.2f} s/epoch besides"
            )
            calibration.save()
    protocol = cells[0].protocol
    dataset = dataset_of(protocol)
    threat = protocol.threat
    for student in sorted({c.student for c in cells}):
        model = _network(student, dataset, device).eval()
        configured = protocol.eval.batch_size
        batch = configured or (
            choose_batch_size(model, tuple(dataset.input_shape), device)[0] if device.type == "cuda" else CPU_BATCH_SIZE
        )
        for label, attack in protocol.eval.attacks.items():
            key = attack_key(protocol, label, student, batch)
            if not redo and key in calibration.attack:
                continue
            entry: dict[str, Any] = {
                "batch_size": batch,
                "all": asdict(measure_attack(protocol, attack, model, dataset, device, batch, points, clock)),
            }
            first = first_stage_spec(attack)
            if first is not None:
                entry["first"] = asdict(measure_attack(protocol, first, model, dataset, device, batch, points, clock))
            calibration.attack[key] = entry
            say(
                f"attack {label} on {student} (batch {batch}): {entry['all']['per_point'] * 1e3:.1f} ms/point + "
                f"{entry['all']['fixed']:.2f} s/batch for a point that stays robust"
            )
            calibration.save()
        if protocol.eval.diagnostics:
            key = per_point_key("diagnostics", protocol, student)
            if redo or key not in calibration.per_point:
                wrapped = _Unbreakable(model, dataset.num_classes).to(device).eval()
                calibration.per_point[key] = _per_point(
                    lambda x, y, wrapped=wrapped, batch=batch: diagnose(wrapped, protocol, x, y, batch_size=batch),
                    dataset,
                    device,
                    points,
                    clock,
                )
        reference = protocol.header.teacher
        for teacher in sorted(
            {c.teacher for c in cells if c.student == student and c.teacher != "none"}
            | ({reference} if reference else set())
        ):
            key = per_point_key("specialization", protocol, student, teacher)
            if not redo and key in calibration.per_point:
                continue
            card_arch = teacher_arch(teacher)
            teacher_net = _network(card_arch["architecture"], dataset, device, card_arch["kwargs"]).eval()
            try:
                with preserved_rng():
                    calibration.per_point[key] = _per_point(
                        lambda x, y, teacher_net=teacher_net, model=model: specialization_report(
                            teacher_net, model, x, y, threat.eps, threat.norm
                        ),
                        dataset,
                        device,
                        points,
                        clock,
                    )
            except ConfigError:  # architectures without stage views: the runner skips specialization too
                calibration.per_point[key] = 0.0
        calibration.save()
    return calibration
