"""The pluggy hook specifications: what a plugin may implement.

Registration hooks receive a `register` callback (the `llm` style): the host owns validation, so a
plugin only says what it provides. Observer hooks see runs as they start, finish epochs and end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["hookimpl", "hookspec", "RkdbenchSpec"]

hookspec = pluggy.HookspecMarker("rkdbench")
hookimpl = pluggy.HookimplMarker("rkdbench")


class RkdbenchSpec:
    @hookspec
    def register_methods(self, register: Callable[..., None]) -> None:
        """Register training methods: `register(cls)`, a `Method` or `StepMethod` subclass with a `name` attribute."""

    @hookspec
    def register_architectures(self, register: Callable[..., None]) -> None:
        """Register networks: `register(factory, name=...)`; `factory(num_classes=, in_channels=, **kw)` returns a
        module."""

    @hookspec
    def register_attacks(self, register: Callable[..., None]) -> None:
        """Register attacks: `register(AttackClass)`; instances have `run(model, x, y) -> AttackResult`."""

    @hookspec
    def register_datasets(self, register: Callable[..., None]) -> None:
        """Register datasets: `register(DatasetClass)`; instances give fixed train/val/test tensors in [0, 1]."""

    @hookspec
    def register_teachers(self, register: Callable[..., None]) -> None:
        """Register teachers: `register(TeacherCard)` with a RobustBench-style id `<dataset>/<threat>/<name>`."""

    @hookspec
    def register_executors(self, register: Callable[..., None]) -> None:
        """Register executors: `register(ExecutorClass)`, a `rkdbench.Executor` subclass with a `name`, typed `Options`
        (they become `rkdbench run` options) and `run(cells, tracker, options, prepare)`."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add CLI subcommands to the `rkdbench` click group `cli`."""

    @hookspec
    def run_started(self, run: Any) -> None:
        """A cell's training run started (or resumed); `run` is the `RunContext`."""

    @hookspec
    def epoch_finished(self, run: Any, epoch: int, metrics: dict[str, float]) -> None:
        """An epoch finished and its checkpoint is on disk; `metrics` are that epoch's logged values."""

    @hookspec
    def run_finished(self, run: Any, result: dict[str, float]) -> None:
        """A cell finished training and evaluation; `result` holds the final test metrics."""
