"""Building a harness teacher from its card's recipe: train it with the recipe's protocol and method (through
`rkdbench.training.build`, as every cell), keep the recipe's selection (`best-val`, the best validation PGD epoch, for
a robust teacher; `last` for a naturally trained one), evaluate it under the students' protocol, and write the
checkpoint and its measured card (sha256, recipe hash, accuracies per protocol hash) into the model dir. A cached build
of another recipe is never resumed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomic
from ..attacks.traits import CLEAN
from ..config import Protocol, load_protocol
from ..data import load_splits
from ..errors import ConfigError, MissingTeacherError
from ..tracking.schema import ACC, metric_key, parse_metric_key
from ..training.checkpoint import load_verified, save_atomic
from .card import TeacherCard
from .model_dir import missing_teacher_message, teacher_path, write_measured_card

__all__ = ["RECIPE_SELECTIONS", "recipe_selection", "evaluation_entry", "build_teacher"]


RECIPE_SELECTIONS = ("best-val", "last")


def recipe_selection(recipe: dict[str, Any]) -> str:
    """Which checkpoint of a build recipe becomes the teacher: `best-val` (the default: the best validation PGD
    epoch, right for a robust teacher) or `last` (a naturally trained teacher)."""
    selection = recipe.get("selection", "best-val")
    if selection not in RECIPE_SELECTIONS:
        raise ConfigError(f"teacher recipe: selection = {selection!r} is not one of {', '.join(RECIPE_SELECTIONS)}")
    return selection


def evaluation_entry(
    protocol: Protocol, n_examples: int, sha256: str, metrics: dict[str, float], flags: list[str], **extra: Any
) -> dict[str, Any]:
    """A measured card's `evaluations.<protocol hash>` entry: what the leaderboard's `AA gap to teacher` matches a
    suite's evaluation against (protocol name and overrides, so its evaluation fields can be compared)."""
    return {
        "protocol": protocol.name,
        "protocol_overrides": protocol.overrides,
        "n_examples": n_examples,
        "eps": protocol.threat.eps,
        "norm": protocol.threat.norm,
        "sha256": sha256,
        "flags": flags,
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
        **{name: value for name, value in metrics.items() if getattr(parse_metric_key(name), "kind", "") == ACC},
    }


def build_teacher(
    card: TeacherCard,
    model_dir: str | os.PathLike[str],
    device: torch.device,
    n_examples: int | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    eval_set: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a harness teacher from its recipe (resumable), evaluate it, save it and its measured card. The
    evaluation uses the recipe's protocol with `eval_set` (`eval.*` overrides, e.g. a suite's) and `n_examples`
    applied, and is recorded under `evaluations.<hash>` too, so a suite evaluated the same way finds its teacher's
    AutoAttack accuracy without attacking the teacher again."""
    from ..evaluation.evaluate import evaluate, test_points
    from ..plugins import create
    from ..training.build import build_trainer

    if card.recipe is None:
        raise MissingTeacherError(
            f"teacher {card.name!r} has no build recipe; {missing_teacher_message(card, teacher_path(card, model_dir))}"
        )
    recipe = card.recipe
    protocol = load_protocol(recipe["protocol"], dict(recipe.get("set", {})), where=f"teacher {card.name} recipe")
    seed = int(recipe.get("seed", 0))
    torch.manual_seed(seed)
    splits = load_splits(protocol, data_dir).to(device)
    student = create(
        "architecture",
        card.architecture,
        num_classes=card.num_classes,
        in_channels=card.in_channels,
        **card.arch_kwargs,
    ).to(device)
    workdir = Path(model_dir) / ".build" / card.name
    built_from = workdir / "recipe_hash"
    if built_from.is_file() and built_from.read_text().strip() != card.recipe_hash:
        shutil.rmtree(workdir)  # epochs trained under another recipe must not be resumed
    workdir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(built_from, card.recipe_hash + "\n")
    started = time.perf_counter()
    trainer = build_trainer(
        protocol,
        create("method", recipe["method"]),
        student,
        splits,
        device=device,
        workdir=workdir,
        seed=seed,
        progress=progress,
    )
    outcome = trainer.fit()
    train_seconds = time.perf_counter() - started
    selection = recipe_selection(recipe)
    # A naturally trained teacher has ~0% PGD accuracy at every epoch, so "best validation PGD" would pick an
    # early, barely trained epoch: its recipe says `selection = "last"`.
    chosen = outcome.last_path if selection == "last" else outcome.best_path
    student.load_state_dict(load_verified(chosen, map_location=device)["model"])
    eval_overrides = {**(eval_set or {}), **({} if n_examples is None else {"eval.n_examples": n_examples})}
    eval_protocol = (
        protocol
        if not eval_overrides
        else load_protocol(recipe["protocol"], {**recipe.get("set", {}), **eval_overrides}, where="teacher evaluation")
    )
    x, y = test_points(eval_protocol, splits.test)
    eval_attacks = eval_protocol.eval.attacks
    started = time.perf_counter()
    evaluation = evaluate(student, eval_protocol, x, y)
    path = teacher_path(card, model_dir)
    digest = save_atomic({"state_dict": student.state_dict()}, path)
    measured = {
        "id": card.name,
        "architecture": card.architecture,
        "sha256": digest,
        "parameters": sum(p.numel() for p in student.parameters()),
        "recipe": recipe,
        "recipe_hash": card.recipe_hash,
        "protocol": protocol.name,
        "protocol_hash": protocol.hash,
        "eps": protocol.threat.eps,
        "selected_epoch": outcome.last_epoch if selection == "last" else outcome.best_epoch,
        "n_examples": len(y),
        # clean and every attack label of the protocol, whatever they are called (None when not measured)
        **{
            metric_key(None, label): evaluation.metrics.get(metric_key(None, label)) for label in [CLEAN, *eval_attacks]
        },
        # what those labels are: `rkdbench.attacks.traits.format_accuracies` names them
        "attacks": {label: entry.table for label, entry in eval_attacks.items()},
        "flags": evaluation.flags,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "card": asdict(card),
        "evaluations": {
            eval_protocol.hash: evaluation_entry(
                eval_protocol, len(y), digest, evaluation.metrics, evaluation.flags, source="teacher build"
            )
        },
    }
    write_measured_card(card, model_dir, measured)
    return measured
