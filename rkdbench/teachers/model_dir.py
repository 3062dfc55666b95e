"""The model dir, RobustBench's layout (so an existing RobustBench model dir works as is): `<model_dir>/<dataset>/
<threat>/<Name>.pt` (ensembles: `<Name>.pt_m0.pt`, `<Name>.pt_m1.pt`, ...), with rkdbench's measured card beside it as
`<Name>.json`. A harness teacher's sha256 is recorded in its card when built; a downloaded teacher's on first use
(trust on first use, like an SSH host key); either is checked on every load after. A card may also point at a file
shipped inside an installed package (`bundled = "package:path"`), used when the model dir has none. Torch-free.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..atomic import sha256_file, write_text_atomic
from .card import TeacherCard

__all__ = [
    "bundled_path",
    "layout_paths",
    "teacher_path",
    "member_paths",
    "card_path",
    "read_measured_card",
    "stale_recipe",
    "teacher_status",
    "write_measured_card",
    "missing_teacher_message",
    "stale_teacher_message",
]


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
