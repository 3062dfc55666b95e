"""What a run prints: one-line messages (`say`), each training run's per-epoch progress (a live bar on a
terminal, one line per epoch otherwise) and the suite status line after each cell. Every function takes the
run's options (or anything with a `console`, a rich Console or None for silence). The status line's ETA uses the
cells' predicted seconds where `run_suite` has them (`RunOptions.predicted`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tracking import schema

__all__ = ["say", "EpochProgress", "epoch_progress", "suite_status", "STATUSES"]

STATUSES = ("finished", "skipped", "failed", "elsewhere", "undelivered")  # the statuses the status line counts


def say(options: Any, message: str) -> None:
    if options.console is not None:
        options.console.print(message)


class EpochProgress:
    """Per-epoch progress of one training run: a live bar with ETA on a terminal, one line per epoch
    otherwise (logs, CI). Call it after each epoch; `close()` ends the bar (also after a failure)."""

    def __init__(self, console: Any, label: str) -> None:
        self.console, self.label = console, label
        self._bar = None
        self._task = None

    def __call__(self, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        summary = (
            f"loss {metrics[schema.TRAIN_LOSS]:.3f}, val clean {metrics[schema.VAL_CLEAN_ACC]:.1%}, "
            f"val PGD {metrics[schema.VAL_PGD_ACC]:.1%}"
        )
        if not self.console.is_terminal:
            self.console.print(
                f"  {self.label} epoch {epoch}/{epochs}: {summary} ({metrics[schema.TRAIN_EPOCH_SECONDS]:.1f}s)",
                highlight=False,
            )
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=epochs, completed=epoch - 1)
        self._bar.update(self._task, completed=epoch, description=f"{self.label} epoch {epoch}: {summary}")
        if epoch >= epochs:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def epoch_progress(options: Any, label: str) -> EpochProgress | None:
    return None if options.console is None else EpochProgress(options.console, label)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


def suite_status(
    outcomes: list,
    total: int,
    seconds: list[float],
    parallel: int = 1,
    predicted: Mapping[str, float | None] | None = None,
) -> str:
    """One line after each cell: counts by status, time spent, and an ETA for the cells not yet ended, with
    `parallel` cells running at once. `predicted` (cell key -> predicted seconds, None where there is none; every
    cell of the `total`) gives the ETA as the remaining cells' predicted seconds over the parallelism (at least the
    longest remaining cell), those without a prediction at the mean time of the cells that ran; without it, the
    mean of the cells that ran (least accurate early in a mixed suite: methods differ in cost)."""
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    remaining = total - len(outcomes)
    extra = "".join(
        f", {counts[status]} {label}"
        for status, label in (("elsewhere", "by other workers"), ("undelivered", "undelivered"))
        if counts[status]
    )
    line = (
        f"suite: {len(outcomes)}/{total} cells ({counts['finished']} finished, {counts['skipped']} skipped, "
        f"{counts['failed']} failed{extra}), {_minutes(sum(seconds))} spent"
    )
    usable = predicted if predicted is not None and len(predicted) == total else {}  # predictions of these cells
    eta = _eta(outcomes, remaining, seconds, parallel, usable)
    if remaining and eta:  # 0: only cells FINISHED before the run are left, skipped at once
        line += f", ~{_minutes(eta)} to go for {remaining} more"
    return line


def _eta(
    outcomes: list, remaining: int, seconds: list[float], parallel: int, predicted: Mapping[str, float | None]
) -> float | None:
    mean = sum(seconds) / len(seconds) if seconds else None
    ended = {o.cell.key for o in outcomes}
    known = [s for key, s in predicted.items() if key not in ended and s is not None]
    if not known:
        if mean is None:
            return None
        rounds = -(-remaining // max(1, min(parallel, remaining)))  # ceil: cells still to run, `parallel` at a time
        return mean * rounds
    unknown = max(remaining - len(known), 0)
    if unknown and mean is None:
        return None  # cells nothing predicts and nothing has run to compare them with
    work = sum(known) + unknown * (mean or 0.0)
    return max(work / max(1, min(parallel, remaining)), max(known))
