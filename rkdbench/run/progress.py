"""What a run prints: one-line messages (`say`), each training run's per-epoch progress (a live bar on a
terminal, one line per epoch otherwise) and the suite status line after each cell. Every function takes the
run's options (or anything with a `console`, a rich Console or None for silence)."""

from __future__ import annotations

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


def suite_status(outcomes: list, total: int, seconds: list[float], parallel: int = 1) -> str:
    """One line after each cell: counts by status, time spent, and an ETA from the mean time of the cells that
    ran, with `parallel` cells running at once (an estimate: methods differ in cost, so it is least accurate early
    in a mixed suite)."""
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
    if remaining and seconds:
        rounds = -(-remaining // max(1, min(parallel, remaining)))  # ceil: cells still to run, `parallel` at a time
        line += f", ~{_minutes(sum(seconds) / len(seconds) * rounds)} to go for {remaining} more"
    return line
