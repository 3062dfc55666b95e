"""Teachers: model cards with RobustBench-style ids, the model-dir layout, verified loading, and building
harness-trained teachers from a recipe.

Layout (RobustBench's, so an existing RobustBench model dir works as is):
`<model_dir>/<dataset>/<threat>/<Name>.pt`, with rkdbench's measured card beside it as `<Name>.json`.
Files are loaded with `weights_only=True`; `{'state_dict': ...}` or bare dicts; `module.`/`model.` prefixes
are stripped; the load is strict. A harness teacher's sha256 is recorded in its card when built and
checked on every load.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .checkpoint import CheckpointError, load_verified, save_atomic, sha256_file
from .config import canonical_hash, load_protocol
from .errors import MissingTeacherError

__all__ = ["TeacherCard", "default_model_dir", "teacher_path", "card_path", "read_measured_card", "load_teacher", "missing_teacher_message",
           "build_teacher", "teacher_status", "state_dict_of", "load_weights", "write_measured_card"]


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

    @property
    def recipe_hash(self) -> str:
        return canonical_hash(self.recipe or {})


def default_model_dir() -> Path:
    return Path(os.environ.get("RKDBENCH_MODEL_DIR", Path.home() / ".cache" / "rkdbench" / "models"))


def teacher_path(card: TeacherCard, model_dir: str | os.PathLike[str]) -> Path:
    return Path(model_dir) / f"{card.name}.pt"


def card_path(card: TeacherCard, model_dir: str | os.PathLike[str]) -> Path:
    return Path(model_dir) / f"{card.name}.json"


def read_measured_card(card: TeacherCard, model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = card_path(card, model_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def _expected_sha256(card: TeacherCard, model_dir: Path) -> str | None:
    measured = read_measured_card(card, model_dir)
    return card.sha256 or (measured or {}).get("sha256")


def teacher_status(card: TeacherCard, model_dir: str | os.PathLike[str]) -> str:
    """'present', 'missing' or 'hash mismatch'."""
    path = teacher_path(card, model_dir)
    if not path.is_file():
        return "missing"
    expected = _expected_sha256(card, Path(model_dir))
    return "hash mismatch" if expected and sha256_file(path) != expected else "present"


def write_measured_card(card: TeacherCard, model_dir: str | os.PathLike[str], measured: dict[str, Any]) -> Path:
    path = card_path(card, model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(measured, indent=2, sort_keys=True) + "\n")
    return path


def state_dict_of(checkpoint: Any) -> dict[str, Any]:
    """The weights in a loaded checkpoint: `{'state_dict': ...}`, `{'model': ...}` (rkdbench's own) or a bare
    state dict, with a `module.` (DataParallel) or `model.` prefix stripped."""
    state = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    for prefix in ("module.", "model."):
        if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, checkpoint: Any, source: str) -> None:
    """Strict `load_state_dict` of a loaded checkpoint (see `state_dict_of`); a mismatch is one `CheckpointError`
    line counting missing, unexpected and wrongly shaped keys, with the first of each."""
    state = state_dict_of(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict")
    expected = model.state_dict()
    problems = {
        "missing": [k for k in expected if k not in state],
        "unexpected": [k for k in state if k not in expected],
        "wrongly shaped": [k for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(
            expected[k].shape)],
    }
    found = [f"{len(keys)} {kind} key(s) (first: {keys[0]})" for kind, keys in problems.items() if keys]
    if found:
        raise CheckpointError(f"{source} does not fit the {type(model).__name__} model: {'; '.join(found)}")
    model.load_state_dict(state, strict=True)


def missing_teacher_message(card: TeacherCard, path: Path) -> str:
    how = (f"build it with `rkdbench teachers build {card.name}`" if card.recipe is not None
           else f"copy it there from {card.source or 'its source'} (RobustBench layout)")
    return f"teacher {card.name!r}: checkpoint {path} is missing; {how}"


def load_teacher(card: TeacherCard, model_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """The teacher as a frozen module in eval mode, after the sha256 check."""
    from . import create

    path = teacher_path(card, model_dir)
    if not path.is_file():
        raise MissingTeacherError(missing_teacher_message(card, path))
    state = load_verified(path, expected_sha256=_expected_sha256(card, Path(model_dir)), map_location="cpu")
    model = create("architecture", card.architecture, num_classes=card.num_classes, in_channels=card.in_channels,
                   **card.arch_kwargs)
    load_weights(model, state, f"teacher {card.name!r}: checkpoint {path}")
    return model.to(device).eval().requires_grad_(False)


def build_teacher(card: TeacherCard, model_dir: str | os.PathLike[str], device: torch.device,
                  n_examples: int | None = None, progress: Callable[[int, int, dict[str, float]], None] | None = None,
                  ) -> dict[str, Any]:
    """Train a harness teacher from its recipe (resumable), evaluate it, save it and its measured card."""
    from . import create
    from .engine import Trainer, TrainSetup
    from .evaluation import evaluate, test_points

    if card.recipe is None:
        raise MissingTeacherError(f"teacher {card.name!r} has no build recipe; {missing_teacher_message(card, teacher_path(card, model_dir))}")
    recipe = card.recipe
    protocol = load_protocol(recipe["protocol"], dict(recipe.get("set", {})), where=f"teacher {card.name} recipe")
    seed = int(recipe.get("seed", 0))
    torch.manual_seed(seed)
    dataset = create("dataset", protocol.section("protocol")["dataset"])
    splits = dataset.load(protocol.section("protocol").get("data_root"), protocol.section("data")["split_seed"]).to(device)
    student = create("architecture", card.architecture, num_classes=card.num_classes, in_channels=card.in_channels,
                     **card.arch_kwargs).to(device)
    workdir = Path(model_dir) / ".build" / card.name
    started = time.perf_counter()
    trainer = Trainer(TrainSetup(protocol=protocol, method=create("method", recipe["method"]), student=student,
                                 teachers={}, splits=splits, seed=seed, device=device, workdir=workdir),
                      progress=progress)
    outcome = trainer.fit()
    train_seconds = time.perf_counter() - started
    best = load_verified(trainer.best_path, map_location=device)
    student.load_state_dict(best["model"])
    eval_protocol = protocol if n_examples is None else load_protocol(
        recipe["protocol"], {**recipe.get("set", {}), "eval.n_examples": n_examples}, where="teacher evaluation")
    x, y = test_points(eval_protocol, splits.test)
    started = time.perf_counter()
    evaluation = evaluate(student, eval_protocol, x, y)
    path = teacher_path(card, model_dir)
    digest = save_atomic({"state_dict": student.state_dict()}, path)
    measured = {
        "id": card.name, "architecture": card.architecture, "sha256": digest,
        "parameters": sum(p.numel() for p in student.parameters()),
        "recipe": recipe, "recipe_hash": card.recipe_hash,
        "protocol": protocol.name, "protocol_hash": protocol.hash, "eps": protocol.section("threat")["eps"],
        "selected_epoch": outcome.best_epoch, "n_examples": len(y),
        "clean_acc": evaluation.metrics["clean_acc"],
        "pgd20_acc": evaluation.metrics.get("pgd20_acc"), "aa_acc": evaluation.metrics.get("aa_acc"),
        "flags": evaluation.flags,
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.perf_counter() - started, 1),
        "card": asdict(card),
    }
    write_measured_card(card, model_dir, measured)
    return measured
