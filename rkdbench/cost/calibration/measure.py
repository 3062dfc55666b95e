"""Timing on this device: the engine's own `fit()` for a few short epochs on synthetic data of the dataset's
shape, and each evaluation attack at two point counts through a wrapper no attack can break, so that every
attack runs its full course on every point (seconds per batch = fixed + per point x points). Every measurement
is repeated (`repeat`): the median is cached with the repetitions' spread, and one whose repetitions disagree
beyond the tolerance is cached as doubtful, said in one line, and measured again by the next calibration.
`Sampler` takes the measurements; a test gives `calibrate_cells` its own samples through it.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...config import AttackEntry, Cell, Protocol
from ...data import Splits
from ...tracking.schema import TRAIN_EPOCH_SECONDS, VAL_SECONDS
from ..repeat import REPEATS, TOLERANCE, doubt_line, judge
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

WARM_UP_EPOCHS = 1  # timed training runs this epoch first, then one epoch per repetition
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


def measure_training(
    cell: Cell, device: torch.device, steps: int, clock: str = "wall", repeats: int = REPEATS
) -> list[TrainTiming]:
    """One warm-up epoch, then `repeats` epochs, of `steps` steps of the engine's fit() on synthetic data: one
    timing per repeated epoch. The engine times training and validation in wall time; with the CPU clock each
    epoch's parts are scaled by the epoch's CPU / wall ratio (read at the end of every epoch)."""
    from ...contracts.build import fresh_method
    from ...plugins import create
    from ...training.build import build_trainer

    dataset = dataset_of(cell.protocol)
    data = copy.deepcopy(cell.protocol.data)
    batch = cell.protocol.train.batch_size
    data["train"]["epochs"] = WARM_UP_EPOCHS + repeats
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
    return [TrainTiming(step=e[0] / steps, val_point=e[1] / val_points, epoch_rest=e[2]) for e in epochs[1:]]


def median_timing(samples: Sequence[TrainTiming]) -> TrainTiming:
    return TrainTiming(
        step=statistics.median(s.step for s in samples),
        val_point=statistics.median(s.val_point for s in samples),
        epoch_rest=max(statistics.median(s.epoch_rest for s in samples), 0.0),
    )


@dataclass(frozen=True)
class AttackSample:
    """One repetition of an attack's timing: seconds of one batch of `n1` and of `n2` points."""

    n1: int
    t1: float
    n2: int
    t2: float


def measure_attack(
    protocol: Protocol,
    entry: AttackEntry,
    model: nn.Module,
    dataset,
    device: torch.device,
    batch_size: int,
    points: int,
    clock: str = "wall",
    repeats: int = REPEATS,
) -> list[AttackSample]:
    """Seconds per batch of the attack on the unbreakable wrapper, at `points // 4` and `points` points (one batch
    each), `repeats` times after one warm-up run: the two give its fixed cost per batch (AutoAttack's thousands of
    iterations cost Python time whatever the batch) and its cost per point (`median_line`)."""
    from ...evaluation.evaluate import run_attack

    wrapped = _Unbreakable(model, dataset.num_classes).to(device).eval()
    n2 = max(min(points, batch_size), 2)
    n1 = max(n2 // 4, 1)
    x = torch.rand(n2, *dataset.input_shape, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.zeros(n2, dtype=torch.long, device=device)
    run = lambda n: run_attack(wrapped, protocol, entry, x[:n], y[:n], batch_size=batch_size)  # noqa: E731
    wrapped(x[:n1].clone().requires_grad_()).sum().backward()  # warm-up (kernels, allocator); a full AutoAttack is not
    return [
        AttackSample(n1, _seconds(lambda: run(n1), device, clock), n2, _seconds(lambda: run(n2), device, clock))
        for _ in range(repeats)
    ]


def median_line(samples: Sequence[AttackSample]) -> Linear:
    """The fixed and per-point cost through the median seconds at each point count."""
    first = samples[0]
    return Linear.through(
        first.n1, statistics.median(s.t1 for s in samples), first.n2, statistics.median(s.t2 for s in samples)
    )


def measure_per_point(
    fn: Callable[[Tensor, Tensor], object],
    dataset,
    device: torch.device,
    points: int,
    clock: str = "wall",
    repeats: int = REPEATS,
) -> list[float]:
    """Seconds per point of `fn(x, y)` on `points` random points, `repeats` times after a warm-up."""
    x = torch.rand(points, *dataset.input_shape, generator=torch.Generator().manual_seed(2)).to(device)
    y = torch.zeros(points, dtype=torch.long, device=device)
    fn(x[:2], y[:2])  # warm-up
    return [_seconds(lambda: fn(x, y), device, clock) / points for _ in range(repeats)]


class Sampler:
    """What `calibrate_cells` measures with: the real timings above. A test subclasses it to give injected
    samples (a busy machine's, say) without a busy machine."""

    def training(self, cell: Cell, device: torch.device, steps: int, clock: str, repeats: int) -> list[TrainTiming]:
        return measure_training(cell, device, steps, clock, repeats)

    def attack(
        self,
        protocol: Protocol,
        entry: AttackEntry,
        model: nn.Module,
        dataset,
        device: torch.device,
        batch: int,
        points: int,
        clock: str,
        repeats: int,
    ) -> list[AttackSample]:
        return measure_attack(protocol, entry, model, dataset, device, batch, points, clock, repeats)

    def per_point(
        self,
        fn: Callable[[Tensor, Tensor], object],
        dataset,
        device: torch.device,
        points: int,
        clock: str,
        repeats: int,
    ) -> list[float]:
        return measure_per_point(fn, dataset, device, points, clock, repeats)


def calibrate_cells(
    cells: list[Cell],
    device: torch.device,
    calibration: Calibration,
    *,
    steps: int = 5,
    points: int = 16,
    redo: bool = False,
    repeats: int = REPEATS,
    tolerance: float = TOLERANCE,
    say: Callable[[str], None] = lambda line: None,
    sampler: Sampler | None = None,
) -> Calibration:
    """Measure every combination of `cells` not yet in `calibration`, or cached as doubtful (all of them with
    `redo`), each `repeats` times, and save it: the medians, with each entry's spread; one line (`say`) for each
    measurement whose repetitions are more than `tolerance` apart."""
    from ...attacks.base import preserved_rng
    from ...diagnostics.diagnose import diagnose
    from ...diagnostics.specialization import specialization_report
    from ...errors import ConfigError
    from ...evaluation.batching import CPU_BATCH_SIZE, choose_batch_size

    sampler = sampler or Sampler()
    clock = calibration.identity["clock"]

    measured: set[str] = set()  # this call's entries: a doubtful one is measured again by the next call, not now

    def wanted(key: str, table: dict[str, Any]) -> bool:
        return key not in measured and (redo or key not in table or calibration.doubtful(key))

    def record(key: str, what: str, quantities: dict[str, list[float]]) -> None:
        """Keep the entry's spread; one line when its repetitions disagree (quantities: unit -> samples)."""
        spread, widest = judge(quantities, tolerance)
        measured.add(key)
        calibration.spread[key] = spread.as_dict()
        if spread.doubtful:
            say(doubt_line(what, quantities[widest], widest, spread, tolerance))

    for cell in cells:
        key = train_key(cell)
        if wanted(key, calibration.train):
            with preserved_rng():
                samples = sampler.training(cell, device, steps, clock, repeats)
            timing = median_timing(samples)
            calibration.train[key] = asdict(timing)
            what = f"train {cell.variant} / {cell.student} / {cell.teacher}"
            say(
                f"{what}: {timing.step * 1e3:.1f} ms/step, {timing.val_point * 1e3:.2f} ms/validation point, "
                f"{timing.epoch_rest:.2f} s/epoch besides"
            )
            record(key, what, {"ms/step": [s.step for s in samples]})
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
            if not wanted(key, calibration.attack):
                continue
            runs = {"all": sampler.attack(protocol, attack, model, dataset, device, batch, points, clock, repeats)}
            first = first_stage_spec(attack)
            if first is not None:
                runs["first"] = sampler.attack(protocol, first, model, dataset, device, batch, points, clock, repeats)
            entry: dict[str, Any] = {"batch_size": batch, **{k: asdict(median_line(v)) for k, v in runs.items()}}
            calibration.attack[key] = entry
            what = f"attack {label} on {student} (batch {batch})"
            say(
                f"{what}: {entry['all']['per_point'] * 1e3:.1f} ms/point + {entry['all']['fixed']:.2f} s/batch for "
                f"a point that stays robust"
            )
            quantities: dict[str, list[float]] = {}
            for part, samples in runs.items():
                stage = " (its first stage)" if part == "first" else ""
                quantities[f"s/batch of {samples[0].n2} points{stage}"] = [s.t2 for s in samples]
                quantities[f"s/batch of {samples[0].n1} points{stage}"] = [s.t1 for s in samples]
            record(key, what, quantities)
            calibration.save()
        if protocol.eval.diagnostics:
            key = per_point_key("diagnostics", protocol, student)
            if wanted(key, calibration.per_point):
                wrapped = _Unbreakable(model, dataset.num_classes).to(device).eval()
                samples = sampler.per_point(
                    lambda x, y, wrapped=wrapped, batch=batch: diagnose(wrapped, protocol, x, y, batch_size=batch),
                    dataset,
                    device,
                    points,
                    clock,
                    repeats,
                )
                calibration.per_point[key] = statistics.median(samples)
                record(key, f"diagnostics on {student}", {"ms/point": samples})
        reference = protocol.header.teacher
        for teacher in sorted(
            {c.teacher for c in cells if c.student == student and c.teacher != "none"}
            | ({reference} if reference else set())
        ):
            key = per_point_key("specialization", protocol, student, teacher)
            if not wanted(key, calibration.per_point):
                continue
            card_arch = teacher_arch(teacher)
            teacher_net = _network(card_arch["architecture"], dataset, device, card_arch["kwargs"]).eval()
            try:
                with preserved_rng():
                    samples = sampler.per_point(
                        lambda x, y, teacher_net=teacher_net, model=model: specialization_report(
                            teacher_net, model, x, y, threat.eps, threat.norm
                        ),
                        dataset,
                        device,
                        points,
                        clock,
                        repeats,
                    )
            except ConfigError:  # architectures without stage views: the runner skips specialization too
                samples = [0.0]
            calibration.per_point[key] = statistics.median(samples)
            record(key, f"specialization of {student} against {teacher}", {"ms/point": samples})
        calibration.save()
    return calibration
