"""Everything that can fail before a suite trains: the results folder must be writable, the tracking store must
answer, and every teacher the cells need must be in the model dir (built from its recipe, once, when
`--build-teachers` allows it)."""

from __future__ import annotations

from ..attacks.traits import format_accuracies
from ..config import Cell, attack_entries
from ..errors import MissingTeacherError
from ..plugins import get_registry
from ..teachers.build import build_teacher
from ..teachers.card import TeacherCard
from ..teachers.model_dir import missing_teacher_message, stale_recipe, stale_teacher_message, teacher_path
from ..tracking import Tracker
from ..tracking.store import writable_folder
from ..training.engine import pick_device
from .cells import NO_TEACHER
from .options import RunOptions
from .progress import epoch_progress, say

__all__ = ["prepare", "teacher_card", "needed_teachers"]


def teacher_card(name: str) -> TeacherCard:
    return get_registry().get("teacher", name).obj


def needed_teachers(cells: list[Cell]) -> list[str]:
    """The teacher ids the cells train with, every role's, sorted."""
    return sorted(
        {c.teacher for c in cells if c.teacher != NO_TEACHER} | {t for c in cells for t in c.extra_teachers.values()}
    )


def prepare(cells: list[Cell], tracker: Tracker, options: RunOptions) -> None:
    """Everything that can fail before training: the results folder and the tracking store, and teachers (built if
    allowed)."""
    writable_folder(options.results)  # cells' checkpoints and journals go there, whichever the store
    tracker.check_reachable()
    for name in needed_teachers(cells):
        card = teacher_card(name)
        path = teacher_path(card, options.model_dir)
        stale = path.is_file() and stale_recipe(card, options.model_dir)
        if path.is_file() and not stale:
            continue
        if not (options.build_teachers and card.recipe is not None):
            raise MissingTeacherError(
                stale_teacher_message(card, path) if stale else missing_teacher_message(card, path)
            )
        why = "its cached build followed an older recipe" if stale else "done once"
        say(options, f"[bold]building teacher[/] {name} (cached in {options.model_dir}; {why})")
        device = pick_device(options.device or "auto")
        protocol = cells[0].protocol
        n = protocol.eval.n_examples or None
        # evaluated as the suite evaluates its students, so the leaderboard's AA gap reuses this measurement
        eval_set = {k: v for k, v in protocol.overrides.items() if k.startswith("eval.")}
        measured = build_teacher(
            card,
            options.model_dir,
            device,
            n_examples=n,
            progress=epoch_progress(options, name),
            data_dir=options.data_dir,
            eval_set=eval_set,
        )
        # whatever the protocol's labels are: the card names them
        accuracies = format_accuracies(measured, attack_entries(measured["attacks"]))
        say(
            options,
            f"teacher {name}: {accuracies} on {measured['n_examples']} test points "
            f"({measured['train_seconds']:.0f}s training, {measured['eval_seconds']:.0f}s evaluation)",
        )
