"""BatchNorm side effects of the official loops (`bn_side_effects`, default on): the running statistics after one
engine step equal the official code's sequence of train-mode forwards, hand-computed on a tiny net whose BatchNorm
follows a linear layer (momentum 0.5, so the order of the updates shows), and `bn_side_effects = False` gives the
engine's previous passes. The extra passes carry no gradient (the weights after the step are identical) and are
counted as student forwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rkdbench
from rkdbench.config import load_protocol
from rkdbench.data import Splits
from rkdbench.training.engine import Trainer, TrainSetup

N = 8


def tiny_student() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.BatchNorm1d(4, momentum=0.5), nn.ReLU(), nn.Linear(4, 10))


def one_step(method_name: str, tmp_path, **params):
    """One engine step (one epoch of one batch) of `method_name` on 8 digits-shaped points: the student before and
    after, the batch x, the adversarial batch x' the engine made, and the run's cost per example."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 8, 8, generator=generator)
    y = torch.arange(N) % 10
    splits = Splits(train=(x, y), val=(x[:2], y[:2]), test=(x[:2], y[:2]), num_classes=10)
    protocol = load_protocol("digits-linf", {"train.epochs": 1, "train.batch_size": N, "train.val_pgd_steps": 1})
    method = rkdbench.create("method", method_name, **params)
    student = tiny_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    torch.manual_seed(2)
    teachers = {role: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) for role in method.teacher_roles}
    trainer = Trainer(
        TrainSetup(
            protocol=protocol,
            method=method,
            student=student,
            teachers=teachers,
            splits=splits,
            seed=0,
            device=torch.device("cpu"),
            workdir=tmp_path / method_name,
        )
    )
    made = []
    attack = trainer.run_attack
    trainer.run_attack = lambda *a: made.append(attack(*a)) or made[-1]
    outcome = trainer.fit()
    return before, student, x, made[0], outcome.cost


def batch_mean(state: dict, z: torch.Tensor) -> torch.Tensor:
    """The BatchNorm input's batch mean for input z under the linear layer's weights in `state`."""
    return (z.flatten(1) @ state["1.weight"].T + state["1.bias"]).mean(0)


def running_mean(sequence: list[torch.Tensor]) -> torch.Tensor:
    """PyTorch's update r <- (1 - m) r + m * mean with m = 0.5, from r = 0."""
    r = torch.zeros(4)
    for mean in sequence:
        r = 0.5 * r + 0.5 * mean
    return r


def check(student, expected_sequence, count):
    bn = student[2]
    assert int(bn.num_batches_tracked) == count
    assert torch.allclose(bn.running_mean, running_mean(expected_sequence), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("on", [True, False])
def test_ard_runs_the_clean_forward_after_s_adv(tmp_path, on):
    before, student, x, x_adv, cost = one_step("ard", tmp_path, attack_steps=0, bn_side_effects=on)
    m_adv, m_nat = batch_mean(before, x_adv), batch_mean(before, x)
    if on:  # official: basic_net(x') for the loss, then basic_net(inputs) for the weight-0 CE term
        check(student, [m_adv, m_nat], 2)
    else:
        check(student, [m_adv], 1)
    assert (cost["cost.student_forward"], cost["cost.student_backward"]) == ((2.0, 1.0) if on else (1.0, 1.0))


@pytest.mark.parametrize("on", [True, False])
def test_adaad_runs_the_clean_forward_before_s_adv(tmp_path, on):
    before, student, x, x_adv, cost = one_step("adaad", tmp_path, attack_steps=0, bn_side_effects=on)
    m_adv, m_nat = batch_mean(before, x_adv), batch_mean(before, x)
    if on:  # official: ori_outputs = net(inputs), then adv_outputs = net(adv_inputs)
        check(student, [m_nat, m_adv], 2)
    else:
        check(student, [m_adv], 1)


@pytest.mark.parametrize("begin, on", [(5, True), (0, True), (0, False)])
def test_iad_runs_s_adv_then_s_nat_and_a_second_s_nat_from_begin(tmp_path, begin, on):
    before, student, x, x_adv, cost = one_step("iad", tmp_path, attack_steps=0, begin=begin, bn_side_effects=on)
    m_adv, m_nat = batch_mean(before, x_adv), batch_mean(before, x)
    if not on:  # the engine's order: S(x), then S(x')
        check(student, [m_nat, m_adv], 2)
    elif begin > 0:  # before `begin`: outputs = S(x'), basic_outputs = S(x)
        check(student, [m_adv, m_nat], 2)
    else:  # from `begin`: and basic_net(inputs) again inside the introspection term
        check(student, [m_adv, m_nat, m_nat], 3)
        assert cost["cost.student_forward"] == 3.0 and cost["cost.student_backward"] == 2.0


@pytest.mark.parametrize("begin, on", [(5, True), (0, True), (0, False)])
def test_fair_iad_runs_s_adv_s_nat_then_a_detached_s_adv_in_every_epoch(tmp_path, begin, on):
    before, student, x, x_adv, cost = one_step("fair-iad", tmp_path, attack_steps=0, begin=begin, bn_side_effects=on)
    m_adv, m_nat = batch_mean(before, x_adv), batch_mean(before, x)
    if on:  # Fair-IAD.py: outputs = S(x'), basic_net_outputs = S(x), basicop = S(x').detach(), whatever the epoch
        check(student, [m_adv, m_nat, m_adv], 3)
        assert cost["cost.student_forward"] == 3.0 and cost["cost.student_backward"] == 2.0
    else:
        check(student, [m_nat, m_adv], 2)


@pytest.mark.parametrize("on", [True, False])
def test_pgd_at_reruns_x_adv_and_runs_x_after_the_optimizer_step(tmp_path, on):
    before, student, x, x_adv, cost = one_step("pgd-at", tmp_path, attack_steps=0, bn_side_effects=on)
    after = student.state_dict()
    assert not torch.equal(after["1.weight"], before["1.weight"])  # the step moved the weights
    m_adv = batch_mean(before, x_adv)
    if on:  # attack_pgd's restart-selection forward and the loss's forward on x', then S(x) with the new weights
        check(student, [m_adv, m_adv, batch_mean(after, x)], 3)
    else:
        check(student, [m_adv], 1)
    assert (cost["cost.student_forward"], cost["cost.student_backward"]) == ((3.0, 1.0) if on else (1.0, 1.0))


@pytest.mark.parametrize(
    "name, on_count, off_count", [("ard", 12, 11), ("pgd-at", 13, 11), ("adaad", 2, 1), ("iad", 12, 12)]
)
def test_train_mode_forwards_per_step_with_the_official_ten_step_attack(tmp_path, name, on_count, off_count):
    # ARD / PGD-AT / IAD attack in train mode: 10 BatchNorm updates; AdaAD attacks in eval mode: none
    counts, weights = [], []
    for on in (True, False):
        before, student, *_ = one_step(name, tmp_path / str(on), bn_side_effects=on)
        counts.append(int(student[2].num_batches_tracked))
        weights.append({k: v for k, v in student.state_dict().items() if "running" not in k and "tracked" not in k})
    assert counts == [on_count, off_count]
    for key in weights[0]:  # the extra passes carry no gradient: the very same step either way
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_the_dry_run_cost_counts_the_side_effect_passes():
    from rkdbench.config import load_suite
    from rkdbench.cost.estimate import training_passes
    from rkdbench.run.cells import expand_cells

    suite = load_suite("digits-quick")
    passes = {c.method: training_passes(c, (1, 8, 8), 10) for c in expand_cells(suite)}
    assert (passes["pgd-at"]["student_forward"], passes["pgd-at"]["student_backward"]) == (13.0, 11.0)
    assert (passes["ard"]["student_forward"], passes["ard"]["student_backward"]) == (12.0, 11.0)
