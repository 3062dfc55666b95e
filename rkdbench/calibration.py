"""Measured cost: time a few real training steps and attack batches on this device, then predict a suite's wall time.

`calibrate` runs, for each (method, student, teachers) combination of a suite, the engine's own `fit()` for three
short epochs on synthetic data of the dataset's shape (the real architectures, random weights: a step's time does
not depend on the weights), and keeps the median seconds per training step, per validation point (the protocol's
PGD-`val_pgd_steps`) and the rest of an epoch (checkpoints). For each `[eval.attacks]` entry it runs the real
attack plugin at two point counts through a wrapper that no attack can break (the student's logits scaled down
plus a fixed margin), so every attack runs its full course on every point: seconds per batch = fixed + per point
x points. AutoAttack runs its later stages only on the points still robust after APGD-CE, so its first stage is
timed separately: a chunk costs CE(correct points) + rest(robust points), which needs the expected clean and
robust accuracy (an assumption the caller states: by default the teacher card's numbers). The student
specialization and the diagnostics are timed per point the same way. Results are cached per device (GPU or CPU
model), torch version and thread count, in `$RKDBENCH_CALIBRATION_DIR` (default ~/.cache/rkdbench/calibration).
"""

from __future__ import annotations

import copy
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .benchmarking import cpu_model
from .config import Cell, Protocol, canonical_hash
from .data import Splits

__all__ = ["calibration_dir", "device_identity", "Linear", "TrainTiming", "Calibration", "Prediction",
           "calibrate_cells", "predict_cell", "CLOCKS", "train_key", "attack_key", "first_stage_spec"]

FORMAT = 1
EPOCHS = 3  # the first is warm-up; the median of the others is kept
ROBUST_MARGIN = 10.0  # logit margin of the unbreakable wrapper (eps-balls move the scaled logits by far less)


def calibration_dir() -> Path:
    return Path(os.environ.get("RKDBENCH_CALIBRATION_DIR", Path.home() / ".cache" / "rkdbench" / "calibration")).expanduser()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time (a shared machine)


def device_identity(device: torch.device, clock: str = "wall") -> dict[str, Any]:
    """What a timing depends on besides the work: the device's name, torch's version, the thread count, and the
    clock (wall time, the default; or process CPU time, the load-independent view on a shared CPU machine)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {"device": name, "device_type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "clock": clock}


def _file_for(identity: dict[str, Any], folder: Path) -> Path:
    clock = "" if identity["clock"] == "wall" else f"-{identity['clock']}-clock"
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{identity['device']}-torch{identity['torch']}-t{identity['threads']}{clock}")
    return folder / f"{slug.strip('-')}.json"


@dataclass(frozen=True)
class Linear:
    """Seconds of one batch of `n` points: `fixed + per_point * n`."""

    fixed: float
    per_point: float

    def __call__(self, n: float) -> float:
        return self.fixed + self.per_point * n if n > 0 else 0.0

    @classmethod
    def through(cls, n1: int, t1: float, n2: int, t2: float) -> Linear:
        per_point = max((t2 - t1) / (n2 - n1), 0.0)  # a flat (or noisy, falling) pair: all fixed cost
        return cls(max(t2 - per_point * n2, 0.0), per_point)


@dataclass(frozen=True)
class TrainTiming:
    """Seconds per training step (at the protocol's batch size), per validation point, and per epoch besides."""

    step: float
    val_point: float
    epoch_rest: float


def _batches(n: float, batch: int) -> list[float]:
    """Sizes of the batches `n` points are cut into (the last one partial)."""
    full, rest = divmod(n, batch)
    return [float(batch)] * int(full) + ([rest] if rest > 1e-9 else [])


@dataclass
class Calibration:
    """The cached measurements of one device identity: `train`, `attack` and `per_point` entries by key."""

    identity: dict[str, Any]
    train: dict[str, dict[str, float]] = field(default_factory=dict)
    attack: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_point: dict[str, float] = field(default_factory=dict)  # specialization, diagnostics: seconds per point
    path: Path | None = None

    @classmethod
    def load(cls, device: torch.device, folder: Path | None = None, clock: str = "wall") -> Calibration:
        identity = device_identity(device, clock)
        path = _file_for(identity, folder or calibration_dir())
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("format") == FORMAT and data.get("identity") == identity:
                return cls(identity, data["train"], data["attack"], data["per_point"], path)
        return cls(identity, path=path)

    def save(self) -> Path:
        """Write atomically, keeping entries another process saved meanwhile (a cache: ours win on a clash)."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("format") == FORMAT and data.get("identity") == self.identity:
                for name in ("train", "attack", "per_point"):
                    setattr(self, name, {**data[name], **getattr(self, name)})
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "identity": self.identity, "train": self.train,
                                   "attack": self.attack, "per_point": self.per_point}, indent=1, sort_keys=True))
        tmp.replace(self.path)
        return self.path

    @property
    def empty(self) -> bool:
        return not (self.train or self.attack)


# ---- keys: what a measurement depends on -----------------------------------------------------------------------
def _teacher_arch(teacher_id: str) -> dict[str, Any]:
    from . import create

    card = create("teacher", teacher_id)
    return {"architecture": card.architecture, "kwargs": card.arch_kwargs, "ensemble": card.ensemble}


def _dataset(protocol: Protocol):
    from .plugins import get_registry

    return get_registry().get("dataset", protocol.header.dataset).obj


def _roles(cell: Cell) -> dict[str, str]:
    from .run.cells import method_of

    return dict(zip(method_of(cell).teacher_roles[:1], [cell.teacher])) | dict(cell.extra_teachers)


def train_key(cell: Cell) -> str:
    train = cell.protocol.data["train"]  # the canonical table (absent = None): calibrations saved before keep their keys
    return canonical_hash({
        "method": cell.method, "params": cell.method_params, "student": cell.student,
        "teachers": {role: _teacher_arch(t) for role, t in _roles(cell).items()},
        "dataset": cell.protocol.header.dataset, "threat": cell.protocol.data["threat"],
        "augment": cell.protocol.inputs.augment,
        **{k: train.get(k) for k in ("batch_size", "val_pgd_steps", "precision", "channels_last", "compile")}})


def attack_key(protocol: Protocol, label: str, student: str, batch_size: int) -> str:
    return canonical_hash({"spec": protocol.eval.attacks[label], "threat": protocol.data["threat"],
                           "seed": protocol.eval.seed, "student": student, "batch_size": batch_size,
                           "dataset": protocol.header.dataset})


def _per_point_key(kind: str, protocol: Protocol, student: str, teacher: str = "") -> str:
    return canonical_hash({"kind": kind, "student": student, "teacher": _teacher_arch(teacher) if teacher else "",
                           "dataset": protocol.header.dataset, "threat": protocol.data["threat"]})


def first_stage_spec(spec: dict[str, Any]) -> dict[str, Any] | None:
    """AutoAttack `standard` runs APGD-T, FAB-T and Square only on the points APGD-CE left robust: its first stage
    alone, to time separately. None for attacks that treat every point alike."""
    if spec.get("attack") == "autoattack" and spec.get("version", "standard") == "standard":
        return {"attack": "autoattack", "version": "custom", "attacks": ["apgd-ce"]}
    return None


# ---- measuring -------------------------------------------------------------------------------------------------
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
    from . import create

    return create("architecture", name, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0],
                  **(arch_kwargs or {})).to(device)


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
    from . import create
    from .engine import Trainer, TrainSetup
    from .run.cells import fresh_method

    dataset = _dataset(cell.protocol)
    data = copy.deepcopy(cell.protocol.data)
    batch = cell.protocol.train.batch_size
    data["train"]["epochs"] = EPOCHS
    protocol = Protocol(cell.protocol.name, data, cell.protocol.source, cell.protocol.overrides)
    generator = torch.Generator().manual_seed(0)
    val_points = min(batch, 64)
    train, val = _synthetic(steps * batch, dataset, device, generator), _synthetic(val_points, dataset, device, generator)
    splits = Splits(train=train, val=val, test=val, num_classes=dataset.num_classes)
    teachers = {}
    for role, teacher in _roles(cell).items():
        card = create("teacher", teacher)
        teachers[role] = _network(card.architecture, dataset, device, card.arch_kwargs)
    torch.manual_seed(0)
    marks = [(time.perf_counter(), CLOCKS[clock]())]
    with tempfile.TemporaryDirectory() as workdir, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        trainer = Trainer(TrainSetup(protocol=protocol, method=fresh_method(cell),
                                     student=_network(cell.student, dataset, device), teachers=teachers, splits=splits,
                                     seed=0, device=device, workdir=Path(workdir)),
                          progress=lambda *_: marks.append((time.perf_counter(), CLOCKS[clock]())))
        marks[0] = (time.perf_counter(), CLOCKS[clock]())
        history = trainer.fit().history
    epochs = []
    for h, (wall0, clock0), (wall1, clock1) in zip(history, marks, marks[1:]):
        scale = (clock1 - clock0) / (wall1 - wall0)
        epochs.append((h["train.epoch_seconds"] * scale, h["val.seconds"] * scale,
                       (wall1 - wall0 - h["train.epoch_seconds"] - h["val.seconds"]) * scale))
    measured = epochs[1:]
    return TrainTiming(step=statistics.median(e[0] for e in measured) / steps,
                       val_point=statistics.median(e[1] for e in measured) / val_points,
                       epoch_rest=max(statistics.median(e[2] for e in measured), 0.0))


def measure_attack(protocol: Protocol, spec: dict[str, Any], model: nn.Module, dataset, device: torch.device,
                   batch_size: int, points: int, clock: str = "wall") -> Linear:
    """Seconds per batch of the attack on the unbreakable wrapper, at `points // 4` and `points` points (one batch
    each): the two give its fixed cost per batch (AutoAttack's thousands of iterations cost Python time whatever
    the batch) and its cost per point."""
    from .evaluation import run_attack

    wrapped = _Unbreakable(model, dataset.num_classes).to(device).eval()
    n2 = max(min(points, batch_size), 2)
    n1 = max(n2 // 4, 1)
    x = torch.rand(n2, *dataset.input_shape, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.zeros(n2, dtype=torch.long, device=device)
    run = lambda n: run_attack(wrapped, protocol, spec, x[:n], y[:n], batch_size=batch_size)  # noqa: E731
    wrapped(x[:n1].clone().requires_grad_()).sum().backward()  # warm-up (kernels, allocator); a full AutoAttack is not
    return Linear.through(n1, _seconds(lambda: run(n1), device, clock), n2, _seconds(lambda: run(n2), device, clock))


def _per_point(fn: Callable[[Tensor, Tensor], object], dataset, device: torch.device, points: int,
               clock: str) -> float:
    x = torch.rand(points, *dataset.input_shape, generator=torch.Generator().manual_seed(2)).to(device)
    y = torch.zeros(points, dtype=torch.long, device=device)
    fn(x[:2], y[:2])  # warm-up
    return _seconds(lambda: fn(x, y), device, clock) / points


def calibrate_cells(cells: list[Cell], device: torch.device, calibration: Calibration, *, steps: int = 5,
                    points: int = 16, redo: bool = False,
                    say: Callable[[str], None] = lambda line: None) -> Calibration:
    """Measure every combination of `cells` not yet in `calibration` (all of them with `redo`) and save it."""
    from .attacks import preserved_rng
    from .batching import CPU_BATCH_SIZE, choose_batch_size
    from .diagnostics import diagnose
    from .errors import ConfigError
    from .specialization import specialization_report

    clock = calibration.identity["clock"]
    for cell in cells:
        key = train_key(cell)
        if redo or key not in calibration.train:
            with preserved_rng():
                timing = measure_training(cell, device, steps, clock)
            calibration.train[key] = asdict(timing)
            say(f"train {cell.variant} / {cell.student} / {cell.teacher}: {timing.step * 1e3:.1f} ms/step, "
                f"{timing.val_point * 1e3:.2f} ms/validation point, {timing.epoch_rest:.2f} s/epoch besides")
            calibration.save()
    protocol = cells[0].protocol
    dataset = _dataset(protocol)
    threat = protocol.threat
    for student in sorted({c.student for c in cells}):
        model = _network(student, dataset, device).eval()
        configured = protocol.eval.batch_size
        batch = configured or (choose_batch_size(model, tuple(dataset.input_shape), device)[0]
                               if device.type == "cuda" else CPU_BATCH_SIZE)
        for label, spec in protocol.eval.attacks.items():
            key = attack_key(protocol, label, student, batch)
            if not redo and key in calibration.attack:
                continue
            entry: dict[str, Any] = {"batch_size": batch, "all": asdict(measure_attack(protocol, spec, model, dataset,
                                                                                       device, batch, points, clock))}
            first = first_stage_spec(spec)
            if first is not None:
                entry["first"] = asdict(measure_attack(protocol, first, model, dataset, device, batch, points, clock))
            calibration.attack[key] = entry
            say(f"attack {label} on {student} (batch {batch}): {entry['all']['per_point'] * 1e3:.1f} ms/point + "
                f"{entry['all']['fixed']:.2f} s/batch for a point that stays robust")
            calibration.save()
        if protocol.eval.diagnostics:
            key = _per_point_key("diagnostics", protocol, student)
            if redo or key not in calibration.per_point:
                wrapped = _Unbreakable(model, dataset.num_classes).to(device).eval()
                calibration.per_point[key] = _per_point(
                    lambda x, y, wrapped=wrapped, batch=batch: diagnose(wrapped, protocol, x, y, batch_size=batch),
                    dataset, device, points, clock)
        reference = protocol.header.teacher
        for teacher in sorted({c.teacher for c in cells if c.student == student and c.teacher != "none"}
                              | ({reference} if reference else set())):
            key = _per_point_key("specialization", protocol, student, teacher)
            if not redo and key in calibration.per_point:
                continue
            card_arch = _teacher_arch(teacher)
            teacher_net = _network(card_arch["architecture"], dataset, device, card_arch["kwargs"]).eval()
            try:
                with preserved_rng():
                    calibration.per_point[key] = _per_point(
                        lambda x, y, teacher_net=teacher_net, model=model: specialization_report(
                            teacher_net, model, x, y, threat.eps, threat.norm), dataset, device, points, clock)
            except ConfigError:  # architectures without stage views: the runner skips specialization too
                calibration.per_point[key] = 0.0
        calibration.save()
    return calibration


# ---- predicting ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """Predicted seconds of one cell: training (steps, validation, checkpoints) and evaluation (every attack for
    every selection, specialization, diagnostics)."""

    train: float
    eval: float
    parts: dict[str, float]

    @property
    def total(self) -> float:
        return self.train + self.eval

    def as_dict(self) -> dict[str, Any]:
        return {"train": round(self.train, 2), "eval": round(self.eval, 2), "total": round(self.total, 2),
                "parts": {k: round(v, 2) for k, v in self.parts.items()}}


def attack_seconds(entry: dict[str, Any], n: int, chunk_size: int, clean: float, robust: float) -> float:
    """An attack over `n` points cut into chunks: AutoAttack-like entries (with a `first` stage) pay the first stage
    on the `clean` fraction and the rest on the `robust` fraction, each in batches of the points left; others pay
    their full course on every point in fixed batches."""
    batch = int(entry["batch_size"])
    full = Linear(**entry["all"])
    first = Linear(**entry["first"]) if "first" in entry else None
    total = 0.0
    for m in _batches(n, chunk_size or n or 1):
        if first is None:
            total += sum(full(b) for b in _batches(m, batch))
        else:
            rest = Linear(max(full.fixed - first.fixed, 0.0), max(full.per_point - first.per_point, 0.0))
            total += sum(first(b) for b in _batches(m * clean, batch))
            total += sum(rest(b) for b in _batches(m * robust, batch))
    return total


def predict_cell(cell: Cell, calibration: Calibration, split_sizes: tuple[int, int, int],
                 accuracy: tuple[float, float], *, specialization: bool = True,
                 evaluations: int | None = None) -> Prediction | None:
    """The cell's wall time from `calibration`, or None when a measurement it needs is missing. `accuracy` is the
    expected (clean, robust) accuracy of the trained student (it sets AutoAttack's cost); `specialization` says
    whether the runner will measure it (a teacher is available); `evaluations`: how many checkpoints are
    evaluated (default: one per selection; best-val is evaluated apart unless it is the last epoch)."""
    timing = calibration.train.get(train_key(cell))
    protocol = cell.protocol
    cfg, train = protocol.eval, protocol.train
    if timing is None:
        return None
    n_train, n_val, n_test = split_sizes
    epochs, batch = train.epochs, train.batch_size
    parts = {"train.steps": epochs * n_train / batch * timing["step"],  # a last partial batch costs its share
             "train.validation": epochs * n_val * timing["val_point"],
             "train.checkpoints": epochs * timing["epoch_rest"]}
    n = cfg.n_examples or n_test
    selections = evaluations or len(cfg.selections)
    for label in cfg.attacks:
        entry = _attack_entry(calibration, protocol, label, cell.student)
        if entry is None:
            return None
        parts[f"eval.{label}"] = selections * attack_seconds(entry, n, cfg.chunk_size, *accuracy)
    if cfg.diagnostics:
        per_point = calibration.per_point.get(_per_point_key("diagnostics", protocol, cell.student))
        if per_point is None:
            return None
        parts["eval.diagnostics"] = n * per_point
    reference = cell.reference_teacher
    if specialization and reference:
        per_point = calibration.per_point.get(_per_point_key("specialization", protocol, cell.student, reference))
        if per_point is None:
            return None
        parts["eval.specialization"] = n * per_point
    train_total = sum(v for k, v in parts.items() if k.startswith("train."))
    return Prediction(train=train_total, eval=sum(parts.values()) - train_total, parts=parts)


def _attack_entry(calibration: Calibration, protocol: Protocol, label: str, student: str) -> dict[str, Any] | None:
    """The entry measured for this attack and student at whichever batch size calibration used (the protocol's, or
    the one chosen from free memory there)."""
    configured = protocol.eval.batch_size
    sizes = [configured] if configured else sorted({int(e["batch_size"]) for e in calibration.attack.values()})
    for size in sizes:
        entry = calibration.attack.get(attack_key(protocol, label, student, size))
        if entry is not None:
            return entry
    return None
