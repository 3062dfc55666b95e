"""The calibration store: per-device timings (`Calibration`, cached as JSON per device, torch version and thread
count in `$RKDBENCH_CALIBRATION_DIR`), the linear cost model of an attack batch and the keys that name what was
timed (a training setup, an attack at a batch size, a per-point diagnostic).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomic
from ..attack_traits import attack_plugins
from ..benchmarking import cpu_model
from ..config import Cell, Protocol, canonical_hash

FORMAT = 1


def calibration_dir() -> Path:
    return Path(
        os.environ.get("RKDBENCH_CALIBRATION_DIR", Path.home() / ".cache" / "rkdbench" / "calibration")
    ).expanduser()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time (a shared machine)


def device_identity(device: torch.device, clock: str = "wall") -> dict[str, Any]:
    """What a timing depends on besides the work: the device's name, torch's version, the thread count, and the
    clock (wall time, the default; or process CPU time, the load-independent view on a shared CPU machine)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clock": clock,
    }


def _file_for(identity: dict[str, Any], folder: Path) -> Path:
    clock = "" if identity["clock"] == "wall" else f"-{identity['clock']}-clock"
    slug = re.sub(
        r"[^A-Za-z0-9.]+", "-", f"{identity['device']}-torch{identity['torch']}-t{identity['threads']}{clock}"
    )
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


def batch_counts(n: float, batch: int) -> list[float]:
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
        write_text_atomic(
            self.path,
            json.dumps(
                {
                    "format": FORMAT,
                    "identity": self.identity,
                    "train": self.train,
                    "attack": self.attack,
                    "per_point": self.per_point,
                },
                indent=1,
                sort_keys=True,
            ),
        )
        return self.path

    @property
    def empty(self) -> bool:
        return not (self.train or self.attack)


# ---- keys: what a measurement depends on -----------------------------------------------------------------------
def teacher_arch(teacher_id: str) -> dict[str, Any]:
    from .. import create

    card = create("teacher", teacher_id)
    return {"architecture": card.architecture, "kwargs": card.arch_kwargs, "ensemble": card.ensemble}


def dataset_of(protocol: Protocol):
    from ..plugins import get_registry

    return get_registry().get("dataset", protocol.header.dataset).obj


def teacher_roles_of(cell: Cell) -> dict[str, str]:
    from ..run.cells import method_of

    return dict(zip(method_of(cell).teacher_roles[:1], [cell.teacher])) | dict(cell.extra_teachers)


def train_key(cell: Cell) -> str:
    train = cell.protocol.data[
        "train"
    ]  # the canonical table (absent = None): calibrations saved before keep their keys
    return canonical_hash(
        {
            "method": cell.method,
            "params": cell.method_params,
            "student": cell.student,
            "teachers": {role: teacher_arch(t) for role, t in teacher_roles_of(cell).items()},
            "dataset": cell.protocol.header.dataset,
            "threat": cell.protocol.data["threat"],
            "augment": cell.protocol.inputs.augment,
            **{k: train.get(k) for k in ("batch_size", "val_pgd_steps", "precision", "channels_last", "compile")},
        }
    )


def attack_key(protocol: Protocol, label: str, student: str, batch_size: int) -> str:
    return canonical_hash(
        {
            "spec": protocol.eval.attacks[label],
            "threat": protocol.data["threat"],
            "seed": protocol.eval.seed,
            "student": student,
            "batch_size": batch_size,
            "dataset": protocol.header.dataset,
        }
    )


def per_point_key(kind: str, protocol: Protocol, student: str, teacher: str = "") -> str:
    return canonical_hash(
        {
            "kind": kind,
            "student": student,
            "teacher": teacher_arch(teacher) if teacher else "",
            "dataset": protocol.header.dataset,
            "threat": protocol.data["threat"],
        }
    )


def first_stage_spec(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The attack's declared first stage (`AttackTraits.first_stage`: AutoAttack `standard` runs APGD-T, FAB-T and
    Square only on the points APGD-CE left robust), to time separately; None for attacks that treat every point
    alike."""
    plugin = attack_plugins([spec["attack"]]).get(spec["attack"])
    return None if plugin is None else plugin.first_stage(spec)


# ---- measuring -------------------------------------------------------------------------------------------------
