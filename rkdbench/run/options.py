"""What a run is asked and what it answers: `RunOptions` (the results store, model and data folders, device, teacher
builds, shard, the console progress goes to, and the cells' predicted seconds), `CellOutcome` (one cell's status,
run id and metrics) and `RunContext` (what the observer hooks `run_started`, `epoch_finished` and `run_finished`
see). Where cells run, and with which options, is the executor's (`rkdbench.run.executor`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Cell
from ..teachers.card import default_model_dir

__all__ = ["RunOptions", "CellOutcome", "RunContext"]


@dataclass(frozen=True)
class RunOptions:
    results: Path = Path("rkdbench-results")
    model_dir: Path = field(default_factory=default_model_dir)
    build_teachers: bool = False
    device: str | None = None  # None: the protocol's train.device
    console: Any = None  # a rich Console, or None for silence
    data_dir: Path | None = None  # None: $RKDBENCH_DATA_DIR or ~/.cache/rkdbench/data (protocols' data_root wins)
    shard: tuple[int, int] = (0, 1)  # (index, count): deprecated; N workers on one store share the work
    # cell key -> predicted wall seconds (None: no prediction), set by `run_suite` for the status line's ETA
    predicted: Mapping[str, float | None] = field(default_factory=dict)


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
    status: str  # finished | skipped | failed | held | elsewhere | undelivered (`run.loop`) | submitted (detached)
    run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    resumed_from: int = 0
