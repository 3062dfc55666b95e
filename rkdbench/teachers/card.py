"""What a teacher is, torch-free: the `TeacherCard` a teacher plugin registers (RobustBench-style id
`<dataset>/<threat>/<Name>`, architecture, threat model, provenance, an optional build recipe) and the model dir the
checkpoints live in (`--model-dir`, else `$RKDBENCH_MODEL_DIR`, else `~/.cache/rkdbench/models`). Plugins, the
leaderboard and the dry run read cards without loading torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import canonical_hash

__all__ = ["TeacherCard", "default_model_dir", "model_dir_path"]


@dataclass(frozen=True)
class TeacherCard:
    """What a teacher plugin registers. `recipe` (protocol, method, architecture, `set` overrides) marks a
    teacher the harness can build itself; others come from a download or an existing RobustBench model dir."""

    name: str  # <dataset>/<threat>/<Name>
    architecture: str
    dataset: str
    norm: str
    eps: float
    num_classes: int
    in_channels: int
    source: str = ""
    license: str = ""
    reported: dict[str, float] = field(default_factory=dict)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None
    sha256: str | None = None
    bundled: str | None = None  # "package:relative/path" of a checkpoint shipped inside an installed package
    ensemble: int = 0  # number of members (<Name>.pt_m<i>.pt) whose logits are averaged; 0 = one file

    @property
    def recipe_hash(self) -> str:
        return canonical_hash(self.recipe or {})


def default_model_dir() -> Path:
    return Path(os.environ.get("RKDBENCH_MODEL_DIR", Path.home() / ".cache" / "rkdbench" / "models"))


def model_dir_path(value: str | None) -> Path:
    """A `--model-dir` value, or the default teacher folder ($RKDBENCH_MODEL_DIR or ~/.cache/rkdbench/models)."""
    from ..teachers.card import default_model_dir

    return Path(value) if value else default_model_dir()
