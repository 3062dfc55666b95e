"""The contract extensions for methods beyond the declarative seed set: forward passes at the mirror point
x - delta, method-owned networks (own optimizer and scheduler, stepped by the engine, checkpointed with the cell and
restored bit for bit on resume), and the per-method optimizer override."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rkdbench
from rkdbench import AttackSpec, Losses, Method, Progress, StepMethod
from support.training import Interrupt, digits_trainer, kill_after_first_epoch, states_equal


def _trainer(method, tmp_path=None, epochs=1, seed=0, n=32):
    return digits_trainer(method, tmp_path, overrides={"train.lr": 0.01, "train.epochs": epochs}, seed=seed, n=n)


class Mirror(Method):
    """Records what the engine hands it: the mirror passes must be S(2x - x') and T(2x - x')."""

    name = "mirror-probe"
    teacher_roles = ("robust",)
    needs = frozenset({"s_adv", "s_mir", "t_mir", "t_adv"})
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="uniform", bn="eval", steps=2, step_size=0.25)

    def attack_objective(self, out, y):
        return torch.nn.functional.cross_entropy(out.s_adv, y, reduction="none")

    def loss(self, out, y, progress):
        self.seen = out
        return Losses(total=(out.s_adv - out.s_mir).pow(2).mean())


def test_mirror_passes_are_at_x_minus_delta_unclamped():
    method = Mirror()
    trainer, x, y = _trainer(method)
    crafted = []
    attack = trainer.run_attack
    trainer.run_attack = lambda *a: crafted.append(attack(*a)) or crafted[-1]
    trainer.training_step(x, y, Progress(0, 1))
    x_adv = crafted[0]
    x_mir = 2 * x - x_adv
    assert (x_mir < 0).any() or (x_mir > 1).any()  # unclamped: some mirror pixels leave [0, 1]
    student, teacher = trainer.s.student, trainer.teacher
    with torch.no_grad():
        assert torch.equal(method.seen.s_mir, student(x_mir))
        assert torch.equal(method.seen.t_mir, teacher(x_mir))
        assert torch.equal(method.seen.t_adv, teacher(x_adv))
    n = x.shape[0]
    assert trainer.counter.student_forward == n * 2 + 2 * n  # attack steps + s_adv + s_mir
    assert trainer.counter.teacher_forward == 2 * n


def test_mirror_pass_of_an_extra_teacher_role_is_allowed_and_unknown_passes_are_not():
    class Two(Mirror):
        name = "two-roles"
        teacher_roles = ("robust", "natural")
        needs = frozenset({"s_adv", "natural:t_mir"})

    assert "natural:t_mir" in Two().needs
    with pytest.raises(ValueError, match="unknown forward passes"):
        type("Bad", (Mirror,), {"name": "bad", "needs": frozenset({"s_adv", "t_mirror"})})()


def test_the_engine_dispatches_on_the_contract_not_on_attribute_names():
    class Declarative(Mirror):
        def training_step(self, batch, ctx):  # a Method's attribute of that name is not its contract
            raise AssertionError("the engine ran a declarative method's training_step")

    method = Declarative()
    trainer, x, y = _trainer(method)
    losses = trainer.training_step(x, y, Progress(0, 1))
    assert method.seen.s_mir is not None and losses.total.requires_grad  # the engine ran `loss`


class Owner(StepMethod):
    """A method with a second trainable network that learns from the student's adversarial points."""

    name = "owner-probe"
    attack = AttackSpec(needs=frozenset({"s_adv"}), init="uniform", bn="eval", steps=1, step_size=0.25)

    def build_networks(self, student):
        return {"aux": nn.Sequential(nn.Flatten(), nn.Linear(64, 10))}

    def configure_optimizer(self, train, network="student"):
        return {**train, "lr": 0.5} if network == "aux" else train

    def training_step(self, batch, ctx):
        x, y = batch
        x_adv = ctx.attack(x, y, lambda xa: nn.functional.cross_entropy(ctx.student(xa), y, reduction="none"))
        aux = ctx.networks["aux"](x_adv)
        return Losses(total=nn.functional.cross_entropy(ctx.student(x_adv), y) + nn.functional.cross_entropy(aux, y))


def test_method_networks_get_their_own_optimizer_and_are_stepped(tmp_path):
    method = Owner()
    trainer, _, _ = _trainer(method, tmp_path)
    aux = trainer.networks["aux"]
    assert trainer.network_optimizers["aux"].param_groups[0]["lr"] == 0.5
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01
    before = [p.detach().clone() for p in aux.parameters()]
    trainer.fit()
    assert all(not torch.equal(b, a) for b, a in zip(before, aux.parameters()))


def test_optimizer_override_reaches_the_student_optimizer():
    method = rkdbench.create("method", "fair-ard")
    trainer, _, _ = _trainer(method)
    assert trainer.optimizer.param_groups[0]["nesterov"] is True
    plain = rkdbench.create("method", "fair-ard", nesterov=False)
    assert _trainer(plain)[0].optimizer.param_groups[0]["nesterov"] is False
    assert plain.describe()["nesterov"] is False  # part of the cell key


@pytest.mark.parametrize("name", ["peeraid", "fair-ard", "owner"])
def test_kill_and_resume_restores_method_networks_and_state_bit_for_bit(tmp_path, name):
    def make():
        return Owner() if name == "owner" else rkdbench.create("method", name)

    straight, _, _ = _trainer(make(), tmp_path / "straight", epochs=2)
    straight.fit()
    interrupted, _, _ = _trainer(make(), tmp_path / "killed", epochs=2)
    interrupted.on_epoch = kill_after_first_epoch
    with pytest.raises(Interrupt):
        interrupted.fit()
    resumed, _, _ = _trainer(make(), tmp_path / "killed", epochs=2, seed=0)
    assert resumed.fit().resumed_from == 1
    a, b = straight._state(2), resumed._state(2)
    for key in ("model", "optimizer", "scheduler", "networks", "method_state", "counter"):
        assert states_equal(a[key], b[key]), key
    assert a["networks"] or name == "fair-ard"
    assert a["method_state"] or name != "fair-ard"
    assert [h["train.loss"] for h in straight.history] == [h["train.loss"] for h in resumed.history]


def test_cost_estimate_counts_the_peer_at_the_students_flops():
    from rkdbench.config import load_suite
    from rkdbench.cost.estimate import training_passes
    from rkdbench.run.cells import expand_cells

    cell = next(c for c in expand_cells(load_suite("digits-all-quick")) if c.method == "peeraid")
    passes = training_passes(cell, (1, 8, 8), 10)
    # attack 10 fwd+bwd, then S(x') twice and S(x) (all three in the graph); peer: P(x), P(x') and one backward
    assert passes == {
        "student_forward": 13,
        "student_backward": 13,
        "teacher_forward": 0,
        "teacher_backward": 0,
        "network_forward": 2,
        "network_backward": 1,
    }
    pgd_at = next(c for c in expand_cells(load_suite("digits-all-quick")) if c.method == "pgd-at")
    assert "network_forward" not in training_passes(pgd_at, (1, 8, 8), 10)
