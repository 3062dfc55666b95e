"""What a run is asked and what it answers: `RunOptions` (results store, model and data folders, executor and
workers, console), `CellOutcome` (one cell's status, run id and metrics) and `RunContext` (what the observer
hooks `run_started`, `epoch_finished` and `run_finished` see)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Cell
from ..teachers import default_model_dir

__all__ = ["RunOptions", "CellOutcome", "RunContext"]


@dataclass
class RunOptions:
    results: Path = Path("rkdbench-results")
    model_dir: Path = field(default_factory=default_model_dir)
    build_teachers: bool = False
    device: str | None = None  # None: the protocol's train.device
    console: Any = None  # a rich Console, or None for silence
    data_dir: Path | None = None  # None: $RKDBENCH_DATA_DIR or ~/.cache/rkdbench/data (protocols' data_root wins)
    shard: tuple[int, int] = (0, 1)  # (index, count): deprecated; N workers on one store share the work
    workers: int = 1  # local worker processes (`executors.local`); 1: this process runs the cells
    executor: str = "local"  # local: this process (or `workers` processes); ray: one task per cell; slurm: an array
    address: str | None = None  # the Ray cluster (auto or HOST:PORT); None: a local cluster sized to the machine
    executor_options: dict[str, Any] = field(default_factory=dict)  # the executor's own command-line options
    executor_config: Path | None = None  # --executor-config: the user config file with [executor.NAME] tables


@dataclass
class RunContext:
    """What observer hooks see: the cell, its MLflow run id and working folder."""

    cell: Cell
    run_id: str
    workdir: Path
    tracking_uri: str


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # finished | skipped | failed | held | elsewhere | undelivered (`executors.serial`) | submitted (Slurm)
    run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    resumed_from: int = 0
