"""rkdbench's pytest plugin for plugin authors' tests (tox's `tox.pytest` is the model): fixtures that run a method's
contract on seeded random logits (`rkdbench_logits`, `rkdbench_contract`), make a tiny network (`rkdbench_tiny_net`),
run one engine step on it (`rkdbench_step`), register a plugin in-process for one test (`rkdbench_register`), and run
one tiny digits cell end to end into a throwaway store (`rkdbench_cell`, its teachers built small once per session in
`rkdbench_teacher_dir`). Activate it in a `conftest.py` with `pytest_plugins = ["rkdbench.pytest_plugin"]`; it is
deliberately not a `pytest11` entry point, so it never loads into the pytest sessions of everyone who installs
rkdbench. Everything runs on the CPU, offline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from . import plugins
from .attacks.base import preserved_rng
from .config import load_protocol, load_suite, to_toml
from .contracts.build import build_method
from .contracts.method import Losses, Method, MethodBase, Outputs, Progress, as_losses
from .data import Splits
from .run.cells import expand_cells
from .run.executor import build_executor, run_suite
from .run.options import RunOptions
from .run.prepare import needed_teachers, teacher_card
from .teachers.build import build_teacher
from .teachers.model_dir import read_measured_card, teacher_path, write_measured_card
from .tracking import Tracker
from .training.build import build_trainer
from .training.engine import Trainer

__all__ = [
    "TINY_CELL",
    "TINY_TEACHER",
    "ContractRun",
    "StepRun",
    "random_outputs",
    "run_contract",
    "tiny_net",
    "run_step",
    "registered",
    "build_tiny_teacher",
    "run_tiny_cell",
    "rkdbench_logits",
    "rkdbench_contract",
    "rkdbench_tiny_net",
    "rkdbench_step",
    "rkdbench_register",
    "rkdbench_teacher_dir",
    "rkdbench_cell",
]

PROTOCOL = "digits-linf"  # offline (scikit-learn's bundled digits), 8x8 grey images, 10 classes
SHAPE, CLASSES = (1, 8, 8), 10
# One epoch, a one-step validation PGD, and PGD-5 on 8 test points of the last checkpoint: seconds, not minutes.
TINY_CELL: dict[str, Any] = {
    "train.epochs": 1,
    "train.val_pgd_steps": 1,
    "eval.n_examples": 8,
    "eval.selections": ["last"],
    "eval.attacks": {"pgd": {"attack": "pgd", "steps": 5}},
}
TINY_TEACHER: dict[str, Any] = {"train.epochs": 1, "train.val_pgd_steps": 1}  # on top of the card's recipe

MethodLike = str | type[MethodBase] | MethodBase


def _method(method: MethodLike, overrides: Mapping[str, Any]) -> MethodBase:
    """A registry name is built as a cell builds it; a class is instantiated; an object is taken as is."""
    if isinstance(method, str):
        return build_method(method, dict(overrides))
    if isinstance(method, type):
        return method(**overrides)
    if overrides:
        raise TypeError(f"overrides {sorted(overrides)} need a method name or class, not the built {method.name!r}")
    return method


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny tensors run fastest on one intra-op thread (several spin against each other on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_outputs(passes: frozenset[str], y: Tensor, num_classes: int, generator: torch.Generator) -> Outputs:
    """Logits for exactly `passes` (`ROLE:t_nat` into `teachers`): student ones are leaves that require grad."""
    out = Outputs()
    for name in sorted(passes):
        logits = 2 * torch.randn(len(y), num_classes, generator=generator)
        role, _, kind = name.rpartition(":")
        if role:
            out.teachers.setdefault(role, {})[kind] = logits
        else:
            setattr(out, name, logits.requires_grad_(kind.startswith("s_")))
    return out


def _only(out: Outputs, passes: frozenset[str]) -> Outputs:
    """The same tensors, `passes` only (what the engine computed for one of the method's two functions)."""
    kept = Outputs()
    for name in passes:
        role, _, kind = name.rpartition(":")
        if role:
            kept.teachers.setdefault(role, {})[kind] = out.teachers[role][kind]
        else:
            setattr(kept, name, getattr(out, name))
    return kept


@dataclasses.dataclass(frozen=True)
class ContractRun:
    """A declarative method's two functions on random logits: `objective` (None without a training attack) on
    `attack_outputs` (the passes its `AttackSpec` reads) and `losses` on `outputs` (the passes in `needs`)."""

    method: Method
    y: Tensor
    attack_outputs: Outputs | None
    objective: Tensor | None
    outputs: Outputs
    losses: Losses

    def check(self) -> None:
        """What the engine relies on: a finite per-example objective of shape [B], a finite scalar total whose
        gradient reaches the student's logits, and scalar parts (logged per epoch)."""
        batch = len(self.y)
        if self.objective is not None:
            assert self.objective.shape == (batch,), f"attack_objective must be per example [{batch}]"
            assert bool(torch.isfinite(self.objective).all()), "attack_objective is not finite"
        _check_total(self.losses)
        student = [getattr(self.outputs, p) for p in sorted(self.method.needs) if p.startswith("s_")]
        grads = torch.autograd.grad(self.losses.total, student, retain_graph=True, allow_unused=True) if student else []
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), "the loss has no gradient to the student"


def _check_total(losses: Losses) -> None:
    assert losses.total.dim() == 0 and bool(torch.isfinite(losses.total)), "Losses.total must be a finite scalar"
    assert losses.total.requires_grad, "Losses.total has no graph: nothing would train"
    for name, value in losses.parts.items():
        assert value.numel() == 1 and bool(torch.isfinite(value).all()), f"part {name!r} must be a finite scalar"


def run_contract(
    method: MethodLike, *, batch: int = 4, num_classes: int = CLASSES, seed: int = 0, **overrides: Any
) -> ContractRun:
    """Build a declarative `Method` and run `attack_objective` and `loss` on seeded random logits."""
    built = _method(method, overrides)
    if not isinstance(built, Method):
        raise TypeError(f"method {built.name!r} is a StepMethod: its contract needs networks, use rkdbench_step")
    # the engine hands the objective the passes its AttackSpec reads, and T(x) too when the loss reads it
    attack_passes = frozenset()
    if built.attack is not None:
        attack_passes = built.attack.needs | (built.needs & {"t_nat"} if built.teacher_roles else frozenset())
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (batch,), generator=generator)
    every = random_outputs(built.needs | attack_passes, y, num_classes, generator)
    outputs = _only(every, built.needs)
    attack_outputs = objective = None
    if built.attack is not None:
        attack_outputs = _only(every, attack_passes)
        objective = built.attack_objective(attack_outputs, y)
    losses = as_losses(built.loss(outputs, y, Progress(0, 1)))
    return ContractRun(built, y, attack_outputs, objective, outputs, losses)


def tiny_net(
    architecture: str = "cnn-tiny", *, num_classes: int = CLASSES, in_channels: int = 1, seed: int = 0
) -> nn.Module:
    """A registered network for 8x8 digits, initialized from `seed` (the global RNG is left as it was)."""
    with preserved_rng():
        torch.manual_seed(seed)
        return plugins.create("architecture", architecture, num_classes=num_classes, in_channels=in_channels)


@dataclasses.dataclass(frozen=True)
class StepRun:
    """One engine training step of either contract on a tiny student (and tiny teachers for the method's roles):
    the `losses`, the forward/backward `passes` counted (summed over the batch) and the `trainer`."""

    method: MethodBase
    losses: Losses
    passes: dict[str, int]
    trainer: Trainer

    def check(self) -> None:
        """A finite scalar total whose backward reaches the student's parameters."""
        _check_total(self.losses)
        self.losses.total.backward()
        student = self.trainer.s.student
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in student.parameters()), (
            "the step's total has no gradient to the student"
        )


def run_step(method: MethodLike, workdir: Path, *, batch: int = 8, seed: int = 0, **overrides: Any) -> StepRun:
    """One `Trainer.training_step` on random digits-shaped inputs, the way a cell runs it."""
    built = _method(method, overrides)
    protocol = load_protocol(PROTOCOL, {"train.batch_size": batch, "train.val_pgd_steps": 1})
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *SHAPE, generator=generator)
    y = torch.randint(0, CLASSES, (batch,), generator=generator)
    teachers = {role: tiny_net(seed=seed + 1 + i).eval() for i, role in enumerate(built.teacher_roles)}
    with preserved_rng():
        torch.manual_seed(seed)
        splits = Splits((x, y), (x, y), (x, y), CLASSES)
        trainer = build_trainer(
            protocol,
            built,
            tiny_net(seed=seed),
            splits,
            device=torch.device("cpu"),
            workdir=workdir,
            teachers=teachers,
            seed=seed,
        )
        losses = trainer.training_step(x, y, Progress(0, 1))
    return StepRun(built, losses, {name: int(count) for name, count in trainer.pass_counts().items()}, trainer)


@contextmanager
def registered(plugin: object, name: str | None = None) -> Iterator[str]:
    """`plugin` (a module or object with `@hookimpl` functions) registered for the block, then unregistered. One
    already registered (an installed plugin's entry point loads the same module) is left as it is."""
    plugins.get_registry()  # load the entry points first: the installed plugin, if any, is the one to keep
    if plugins.pm.is_registered(plugin):
        yield str(plugins.pm.get_name(plugin))
        return
    registered_name = str(plugins.pm.register(plugin, name=name))
    plugins.reset(keep_plugins=True)
    try:
        yield registered_name
    finally:
        if plugins.pm.has_plugin(registered_name):
            plugins.pm.unregister(name=registered_name)
        plugins.reset(keep_plugins=True)


def build_tiny_teacher(
    name: str,
    model_dir: Path,
    *,
    recipe_set: Mapping[str, Any] = TINY_TEACHER,
    n_examples: int = 8,
    eval_set: Mapping[str, Any] | None = None,
) -> Path:
    """Build the registered teacher `name` into `model_dir` from its recipe with `recipe_set` on top (a small
    training), on the CPU, and record it under the card's own recipe hash, so runs take it as current."""
    card = teacher_card(name)
    small = card  # without a recipe, build_teacher says where its checkpoint goes
    if card.recipe is not None:
        small = dataclasses.replace(card, recipe={**card.recipe, "set": {**card.recipe.get("set", {}), **recipe_set}})
    build_teacher(small, model_dir, torch.device("cpu"), n_examples=n_examples, eval_set=dict(eval_set or {}))
    write_measured_card(
        card, model_dir, {**(read_measured_card(card, model_dir) or {}), "recipe_hash": card.recipe_hash}
    )
    return teacher_path(card, model_dir)


def run_tiny_cell(
    method: str,
    results: Path,
    model_dir: Path,
    *,
    student: str = "cnn-tiny",
    seed: int = 0,
    sets: Mapping[str, Any] | None = None,
    **method_params: Any,
) -> dict[str, float]:
    """Train and evaluate one cell of `method` on the digits protocol shrunk by `TINY_CELL` (and `sets`) into the
    store `results`, building missing teachers small into `model_dir`; returns the metrics its MLflow run holds."""
    suite_file = results.parent / f"{results.name}-suite.toml"
    suite_file.write_text(
        to_toml(
            {
                "suite": {
                    "name": "tiny",
                    "protocol": PROTOCOL,
                    "methods": [method],
                    "students": [student],
                    "seeds": [seed],
                }
            }
        )
    )
    overrides = {**TINY_CELL, **(sets or {}), **{f"method.{method}.{k}": v for k, v in method_params.items()}}
    suite = load_suite(str(suite_file), overrides)
    for name in needed_teachers(expand_cells(suite)):
        if not teacher_path(teacher_card(name), model_dir).is_file():
            build_tiny_teacher(name, model_dir, eval_set={k: v for k, v in TINY_CELL.items() if k.startswith("eval.")})
    options = RunOptions(results=results, model_dir=model_dir, device="cpu")
    [outcome] = run_suite(suite, options, build_executor("serial"))
    assert outcome.status == "finished", f"the tiny {method} cell {outcome.status}: {outcome.error}"
    return dict(Tracker(results).get_run(outcome.run_id).data.metrics)


@pytest.fixture
def rkdbench_logits() -> Callable[..., tuple[Outputs, Tensor]]:
    """`make(passes, batch=4, num_classes=10, seed=0) -> (Outputs, y)`: seeded random logits for exactly `passes`
    (e.g. a method's `needs`) and random labels."""

    def make(passes, batch: int = 4, num_classes: int = CLASSES, seed: int = 0) -> tuple[Outputs, Tensor]:
        generator = torch.Generator().manual_seed(seed)
        y = torch.randint(0, num_classes, (batch,), generator=generator)
        return random_outputs(frozenset(passes), y, num_classes, generator), y

    return make


@pytest.fixture
def rkdbench_contract() -> Callable[..., ContractRun]:
    """`run(method, batch=4, num_classes=10, seed=0, **overrides) -> ContractRun`: a declarative method (a registry
    name, a class or an object) built with `overrides` and run on random logits; `.check()` asserts the basics."""
    return run_contract


@pytest.fixture
def rkdbench_tiny_net() -> Callable[..., nn.Module]:
    """`make(architecture="cnn-tiny", num_classes=10, in_channels=1, seed=0) -> nn.Module` for 8x8 inputs."""
    return tiny_net


@pytest.fixture
def rkdbench_step(tmp_path: Path) -> Callable[..., StepRun]:
    """`run(method, batch=8, seed=0, **overrides) -> StepRun`: one engine training step of either contract on
    `cnn-tiny` networks and random inputs; `.passes` are what it counted, `.check()` asserts the basics."""

    def run(method: MethodLike, **kwargs: Any) -> StepRun:
        with _one_thread():
            return run_step(method, tmp_path / "step", **kwargs)

    return run


@pytest.fixture
def rkdbench_register() -> Iterator[Callable[..., object]]:
    """`register(plugin, name=None) -> plugin`: a plugin module or object registered in-process until the test
    ends, as its entry point registers it once installed."""
    with ExitStack() as stack:

        def register(plugin: object, name: str | None = None) -> object:
            stack.enter_context(registered(plugin, name))
            return plugin

        yield register


@pytest.fixture(scope="session")
def rkdbench_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir for the session: `rkdbench_cell` builds the teachers it needs into it, small, once."""
    return tmp_path_factory.mktemp("rkdbench-models")


@pytest.fixture
def rkdbench_cell(
    tmp_path: Path, rkdbench_teacher_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, float]]:
    """`run(method, student="cnn-tiny", seed=0, sets=None, **method_params) -> metrics`: one tiny digits cell of a
    registered method, trained and evaluated end to end on the CPU into a store under `tmp_path`."""

    def run(method: str, **kwargs: Any) -> dict[str, float]:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # never the user's server, whenever it was set
        with _one_thread():
            return run_tiny_cell(method, tmp_path / f"results-{method}", rkdbench_teacher_dir, **kwargs)

    return run
