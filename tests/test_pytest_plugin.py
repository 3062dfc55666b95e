"""rkdbench's pytest plugin (tests/conftest.py activates it as a plugin author's conftest does): random logits of
exactly the passes asked for, every built-in method's contract on them, one engine step of either contract with the
engine's own pass counts, a seeded tiny network, in-process registration for one block, one tiny cell end to end,
and no `pytest11` entry point (it never loads into other pytest sessions)."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

import rkdbench
from rkdbench import Losses, Method
from rkdbench.pytest_plugin import registered

ROOT = Path(__file__).resolve().parents[1]
METHODS = rkdbench.list_components("method")
DECLARATIVE = [m for m in METHODS if issubclass(type(rkdbench.create("method", m)), Method)]


def test_logits_are_exactly_the_passes_asked_for(rkdbench_logits):
    out, y = rkdbench_logits({"s_adv", "t_nat", "natural:t_adv"}, batch=3, num_classes=5, seed=1)
    assert y.shape == (3,) and int(y.max()) < 5
    assert out.s_adv.shape == (3, 5) and out.s_adv.requires_grad and out.s_adv.is_leaf
    assert out.t_nat.shape == (3, 5) and not out.t_nat.requires_grad
    assert set(out.teachers) == {"natural"} and set(out.teachers["natural"]) == {"t_adv"}
    assert out.s_nat is None and out.t_adv is None and out.s_mir is None
    again, _ = rkdbench_logits({"s_adv", "t_nat", "natural:t_adv"}, batch=3, num_classes=5, seed=1)
    other, _ = rkdbench_logits({"s_adv", "t_nat", "natural:t_adv"}, batch=3, num_classes=5, seed=2)
    assert torch.equal(again.s_adv, out.s_adv) and not torch.equal(other.s_adv, out.s_adv)


@pytest.mark.parametrize("name", DECLARATIVE)
def test_every_builtin_declarative_method_passes_the_contract_check(rkdbench_contract, name):
    run = rkdbench_contract(name, seed=3)
    run.check()
    given = {p for p in ("s_nat", "s_adv", "t_nat", "t_adv", "s_mir", "t_mir") if getattr(run.outputs, p) is not None}
    assert given | {f"{r}:{p}" for r, passes in run.outputs.teachers.items() for p in passes} == run.method.needs
    assert (run.objective is None) == (run.method.attack is None)
    assert torch.equal(rkdbench_contract(name, seed=3).losses.total.detach(), run.losses.total.detach())


def test_contract_overrides_reach_the_method_and_the_loss(rkdbench_contract):
    run = rkdbench_contract("rslad", batch=6, num_classes=3)
    assert run.objective.shape == (6,) and run.y.shape == (6,)
    heavier = rkdbench_contract("kd", temperature=1.0)
    assert heavier.method.params.temperature == 1.0
    assert rkdbench_contract("kd").losses.total.item() != pytest.approx(heavier.losses.total.item())


class TeacherOnly(Method):
    """A loss that reads only the teacher: nothing would train the student."""

    name = "teacher-only"
    teacher_roles = ("robust",)
    needs = frozenset({"s_nat", "t_nat"})
    attack = None

    def loss(self, out, y, progress):
        return Losses(total=out.t_nat.mean() + 0 * out.s_nat.detach().sum())


def test_the_check_fails_a_loss_that_never_reaches_the_student(rkdbench_contract):
    run = rkdbench_contract(TeacherOnly)
    with pytest.raises(AssertionError, match="Losses.total has no graph"):
        run.check()


def test_a_step_method_is_run_through_the_engine_not_on_logits(rkdbench_contract):
    with pytest.raises(TypeError, match="'peeraid' is a StepMethod.*rkdbench_step"):
        rkdbench_contract("peeraid")


@pytest.mark.parametrize("name", METHODS)
def test_one_engine_step_of_every_builtin_method(rkdbench_step, name):
    step = rkdbench_step(name, batch=4)
    step.check()
    assert step.passes["student_forward"] > 0
    assert bool(step.passes["teacher_forward"]) == step.method.uses_teacher


def test_a_step_counts_what_the_engine_counts_and_leaves_the_rng_alone(rkdbench_step):
    state = torch.get_rng_state()
    step = rkdbench_step("peeraid", batch=8)
    assert torch.equal(torch.get_rng_state(), state)
    # attack 10 fwd+bwd, S(x') twice and S(x); the peer: P(x), P(x') and one backward (tests/methods/test_peeraid.py)
    n = 8
    assert step.passes == {
        "student_forward": 13 * n,
        "student_backward": 13 * n,
        "teacher_forward": 0,
        "teacher_backward": 0,
        "network_forward": 2 * n,
        "network_backward": n,
    }
    again = rkdbench_step("peeraid", batch=8)
    assert torch.equal(again.losses.total.detach(), step.losses.total.detach())


def test_tiny_net_is_seeded_and_leaves_the_rng_alone(rkdbench_tiny_net):
    state = torch.get_rng_state()
    a, b, c = rkdbench_tiny_net(seed=0), rkdbench_tiny_net(seed=0), rkdbench_tiny_net(seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    first = [p for p in a.parameters()][0]
    assert torch.equal(first, next(b.parameters())) and not torch.equal(first, next(c.parameters()))
    assert a(torch.rand(2, 1, 8, 8)).shape == (2, 10)


class TeacherOnlyPlugin:
    @rkdbench.hookimpl
    def register_methods(self, register):
        register(TeacherOnly)


def test_registration_lasts_the_block_and_an_installed_plugin_is_kept(rkdbench_register):
    with registered(TeacherOnlyPlugin(), "teacher-only-plugin") as name:
        assert name == "teacher-only-plugin" and "teacher-only" in rkdbench.list_components("method")
    assert "teacher-only" not in rkdbench.list_components("method")
    import rkdbench_plugins.methods.ard as ard  # registered by its entry point

    assert rkdbench_register(ard) is ard
    with registered(ard):
        pass
    assert "ard" in rkdbench.list_components("method")  # the entry point's registration is not undone


@pytest.mark.slow
def test_one_tiny_cell_end_to_end(rkdbench_cell, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/never")  # a user's server: never written to
    metrics = rkdbench_cell("kd", temperature=2.0)
    assert 0.0 <= metrics["test.pgd_acc"] <= metrics["test.clean_acc"] <= 1.0 and metrics["test.n_examples"] == 8
    assert {"train.loss", "val.pgd_acc", "cost.teacher_forward"} <= set(metrics)
    assert list((tmp_path / "cwd").iterdir()) == []  # nothing in the current directory


def test_the_plugin_is_activated_by_conftest_only():
    assert not [ep for ep in entry_points(group="pytest11") if ep.value.startswith("rkdbench")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "pytest11" not in project.get("entry-points", {})
