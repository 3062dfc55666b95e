"""Teachers: model cards with RobustBench-style ids, the model-dir layout, verified loading, and building
harness-trained teachers from a recipe.

Layout (RobustBench's, so an existing RobustBench model dir works as is):
`<model_dir>/<dataset>/<threat>/<Name>.pt`, with rkdbench's measured card beside it as `<Name>.json`.
Files are loaded with `weights_only=True`; `{'state_dict': ...}` or bare dicts; `module.`/`model.` prefixes
are stripped; the load is strict. Ensembles are RobustBench's `<Name>.pt_m0.pt`, `<Name>.pt_m1.pt`, ...
A harness teacher's sha256 is recorded in its card when built; a downloaded teacher's on first use (trust on
first use, like an SSH host key); either is checked on every load after. A card may also point at a file
shipped inside an installed package (`bundled = "package:path"`), used when the model dir has none.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_text_atomic
from .checkpoint import CheckpointError, load_verified, save_atomic, sha256_file
from .config import Protocol, canonical_hash, load_protocol
from .data import load_splits
from .errors import ConfigError, MissingTeacherError

__all__ = [
    "TeacherCard",
    "LogitEnsemble",
    "default_model_dir",
    "teacher_path",
    "bundled_path",
    "layout_paths",
    "member_paths",
    "card_path",
    "read_measured_card",
    "load_teacher",
    "missing_teacher_message",
    "build_teacher",
    "evaluation_entry",
    "teacher_status",
    "state_dict_of",
    "load_weights",
    "write_measured_card",
]


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


def bundled_path(card: TeacherCard) -> Path | None:
    """Where a bundled checkpoint lies in its installed package (None when the card has none or the package
    is not installed)."""
    if card.bundled is None:
        return None
    package, _, relative = card.bundled.partition(":")
    try:
        return Path(str(resources.files(package).joinpath(relative)))
    except ModuleNotFoundError:
        return None


def layout_paths(card: TeacherCard, model_dir: str | os.PathLike[str]) -> list[Path]:
    """Where RobustBench's layout puts the teacher's file(s) in the model dir: `<Name>.pt`, or for an
    ensemble `<Name>.pt_m0.pt`, `<Name>.pt_m1.pt`, ..."""
    base = Path(model_dir) / f"{card.name}.pt"
    return [base.with_name(f"{base.name}_m{i}.pt") for i in range(card.ensemble)] if card.ensemble else [base]


def teacher_path(card: TeacherCard, model_dir: str | os.PathLike[str]) -> Path:
    """The model dir's file; for a bundled card without one, the package's copy. Ensembles: the first member."""
    path = layout_paths(card, model_dir)[0]
    bundled = bundled_path(card)
    return bundled if not path.is_file() and bundled is not None and bundled.is_file() else path


def member_paths(card: TeacherCard, model_dir: str | os.PathLike[str]) -> list[Path]:
    """Every checkpoint file the teacher is loaded from (a bundled copy stands in for a missing single file)."""
    return layout_paths(card, model_dir) if card.ensemble else [teacher_path(card, model_dir)]


def card_path(card: TeacherCard, model_dir: str | os.PathLike[str]) -> Path:
    return Path(model_dir) / f"{card.name}.json"


def read_measured_card(card: TeacherCard, model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = card_path(card, model_dir)
    return json.loads(path.read_text()) if path.is_file() else None


def _expected_sha256(card: TeacherCard, model_dir: Path, member: int = 0) -> str | None:
    if card.ensemble:
        return ((read_measured_card(card, model_dir) or {}).get("sha256_members") or {}).get(str(member))
    measured = read_measured_card(card, model_dir)
    return card.sha256 or (measured or {}).get("sha256")


def stale_recipe(card: TeacherCard, model_dir: str | os.PathLike[str]) -> bool:
    """A harness teacher whose cached build followed another recipe than its card's (the measured card's
    `recipe_hash` differs): it must be rebuilt, never used silently."""
    measured = read_measured_card(card, model_dir) if card.recipe is not None else None
    return bool(measured and measured.get("recipe_hash") and measured["recipe_hash"] != card.recipe_hash)


def teacher_status(card: TeacherCard, model_dir: str | os.PathLike[str]) -> str:
    """'present', 'missing', 'hash mismatch' or 'stale recipe'."""
    paths = member_paths(card, model_dir)
    if not all(path.is_file() for path in paths):
        return "missing"
    for i, path in enumerate(paths):
        expected = _expected_sha256(card, Path(model_dir), i)
        if expected and sha256_file(path) != expected:
            return "hash mismatch"
    return "stale recipe" if stale_recipe(card, model_dir) else "present"


def _record_first_use(card: TeacherCard, model_dir: Path, digests: list[str]) -> None:
    """Trust on first use: a teacher with no known sha256 gets its digest(s) written into its measured card,
    so a later swap of the file (a re-download, an HTML page, another model) is caught."""
    measured = read_measured_card(card, model_dir) or {"id": card.name}
    if card.ensemble:
        measured["sha256_members"] = {str(i): d for i, d in enumerate(digests)}
    else:
        measured["sha256"] = digests[0]
    measured.setdefault("sha256_recorded", "on first use")
    write_measured_card(card, model_dir, measured)


def write_measured_card(card: TeacherCard, model_dir: str | os.PathLike[str], measured: dict[str, Any]) -> Path:
    path = card_path(card, model_dir)
    write_text_atomic(path, json.dumps(measured, indent=2, sort_keys=True) + "\n")
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
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, checkpoint: Any, source: str) -> None:
    """Strict `load_state_dict` of a loaded checkpoint (see `state_dict_of`); a mismatch is one `CheckpointError`
    line counting missing, unexpected and wrongly shaped keys, with the first of each."""
    state = state_dict_of(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict")
    expected = model.state_dict()
    problems = {
        # BatchNorm fills a missing `num_batches_tracked` itself (checkpoints from before PyTorch 0.4.1 lack it)
        "missing": [k for k in expected if k not in state and not k.endswith("num_batches_tracked")],
        "unexpected": [k for k in state if k not in expected],
        "wrongly shaped": [
            k for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)
        ],
    }
    found = [f"{len(keys)} {kind} key(s) (first: {keys[0]})" for kind, keys in problems.items() if keys]
    if found:
        raise CheckpointError(f"{source} does not fit the {type(model).__name__} model: {'; '.join(found)}")
    model.load_state_dict(state, strict=True)


def missing_teacher_message(card: TeacherCard, path: Path) -> str:
    if card.recipe is not None:
        how = f"build it with `rkdbench teachers build {card.name}`"
    elif card.bundled is not None:
        how = f"it ships in the Python package `{card.bundled.partition(':')[0]}`; install it"
    else:
        dataset, threat, name = card.name.split("/", 2)
        how = (
            f"copy it there from {card.source or 'its source'} (RobustBench layout), or with network and "
            f"`pip install rkdbench[robustbench]`: `rkdbench teachers fetch {card.name}` "
            f"(robustbench.utils.load_model({name!r}, dataset={dataset!r}, threat_model={threat!r}))"
        )
    return f"teacher {card.name!r}: checkpoint {path} is missing; {how}"


def stale_teacher_message(card: TeacherCard, path: Path) -> str:
    return (
        f"teacher {card.name!r}: the checkpoint {path} was built from an older recipe than its card's; rebuild it "
        f"with `rkdbench teachers build {card.name}` (or run with --build-teachers)"
    )


class LogitEnsemble(nn.Module):
    """RobustBench-style ensemble: the members' logits averaged (members share one architecture)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.models]).mean(0)


def load_teacher(card: TeacherCard, model_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """The teacher as a frozen module in eval mode, after the sha256 check (recorded on first use)."""
    from . import create

    folder = Path(model_dir)
    members, digests, unverified = [], [], False
    for i, path in enumerate(member_paths(card, folder)):
        if not path.is_file():
            raise MissingTeacherError(missing_teacher_message(card, path))
        expected = _expected_sha256(card, folder, i)
        unverified |= expected is None
        state = load_verified(path, expected_sha256=expected, map_location="cpu")
        model = create(
            "architecture",
            card.architecture,
            num_classes=card.num_classes,
            in_channels=card.in_channels,
            **card.arch_kwargs,
        )
        load_weights(model, state, f"teacher {card.name!r}: checkpoint {path}")
        members.append(model)
        digests.append(expected or sha256_file(path))
    if unverified:
        _record_first_use(card, folder, digests)
    model = LogitEnsemble(members) if card.ensemble else members[0]
    return model.to(device).eval().requires_grad_(False)


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
        **{k: v for k, v in metrics.items() if k.endswith("_acc")},
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
    from . import create
    from .engine import Trainer, TrainSetup
    from .evaluation import evaluate, test_points

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
    trainer = Trainer(
        TrainSetup(
            protocol=protocol,
            method=create("method", recipe["method"]),
            student=student,
            teachers={},
            splits=splits,
            seed=seed,
            device=device,
            workdir=workdir,
        ),
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
        **{f"{label}_acc": evaluation.metrics.get(f"{label}_acc") for label in ["clean", *eval_attacks]},
        "attacks": eval_attacks,  # what those labels are: `rkdbench.attack_traits.format_accuracies` names them
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
