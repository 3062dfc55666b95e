"""PGD-AT, ARD and RSLAD: attack objectives and losses against values computed by hand from the
METHODS.md formulas on small fixed tensors (reductions and temperature factors included), their declared
forward passes and attack settings, and one optimizer step that lowers the method's own loss."""

from __future__ import annotations

import math

import pytest
import torch

import rkdbench
from rkdbench import Outputs, Progress

S = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
T = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
S_NAT = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
Y = torch.tensor([0, 2])
P = Progress(epoch=0, epochs=1)


def softmax(row, tau=1.0):
    e = [math.exp(v / tau) for v in row]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def ce(row, label):
    return -math.log(softmax(row)[label])


def test_pgd_at_contract_and_values():
    m = rkdbench.create("method", "pgd-at")
    assert m.needs == {"s_adv"} and not m.uses_teacher
    assert (m.attack.init, m.attack.bn, m.attack.steps, m.attack.step_size) == ("uniform", "train", 10, 0.25)
    expected = [ce(S[0].tolist(), 0), ce(S[1].tolist(), 2)]
    assert m.attack_objective(Outputs(s_adv=S), Y).tolist() == pytest.approx(expected, rel=1e-6)
    assert float(m.loss(Outputs(s_adv=S), Y, P).total) == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_ard_defaults_are_official_and_loss_uses_mean_reduction_and_tau_squared():
    m = rkdbench.create("method", "ard")
    assert (m.params.temperature, m.params.alpha, m.params.kl_reduction) == (30.0, 1.0, "mean")
    assert m.needs == {"s_adv", "t_nat"} and m.uses_teacher
    assert (m.attack.init, m.attack.bn, m.attack.needs) == ("uniform", "train", {"s_adv"})
    tau, C, B = 30.0, 3, 2
    per_example = [kl(softmax(T[i].tolist(), tau), softmax(S[i].tolist(), tau)) for i in range(B)]
    expected = tau * tau * sum(per_example) / (B * C)  # nn.KLDivLoss() 'mean' = sum / (B*C)
    got = m.loss(Outputs(s_adv=S, t_nat=T), Y, P).total
    assert float(got) == pytest.approx(expected, rel=1e-4)  # float32 at tau^2 = 900
    assert m.attack_objective(Outputs(s_adv=S), Y).tolist() == pytest.approx(
        [ce(S[0].tolist(), 0), ce(S[1].tolist(), 2)]
    )


def test_ard_alpha_below_one_adds_clean_ce_and_needs_s_nat():
    m = rkdbench.create("method", "ard", alpha=0.75, temperature=1.0, kl_reduction="batchmean")
    assert m.needs == {"s_adv", "t_nat", "s_nat"}
    kd = sum(kl(softmax(T[i].tolist()), softmax(S[i].tolist())) for i in range(2)) / 2
    ce_nat = (ce(S_NAT[0].tolist(), 0) + ce(S_NAT[1].tolist(), 2)) / 2
    got = m.loss(Outputs(s_adv=S, t_nat=T, s_nat=S_NAT), Y, P).total
    assert float(got) == pytest.approx(0.75 * kd + 0.25 * ce_nat, rel=1e-5)


def test_rslad_attack_objective_is_per_example_kl_to_clean_teacher():
    m = rkdbench.create("method", "rslad")
    assert (m.attack.init, m.attack.bn, m.attack.needs) == ("gauss", "eval", {"s_adv", "t_nat"})
    expected = [kl(softmax(T[i].tolist()), softmax(S[i].tolist())) for i in range(2)]
    assert m.attack_objective(Outputs(s_adv=S, t_nat=T), Y).tolist() == pytest.approx(expected, rel=1e-5)


def test_rslad_loss_official_elementwise_form():
    m = rkdbench.create("method", "rslad")
    assert m.needs == {"s_adv", "s_nat", "t_nat"}

    def rslad_term(student):
        total = 0.0
        for i in range(2):
            p_t, p_s = softmax(T[i].tolist()), softmax(student[i].tolist())
            total += sum(-math.log(ps) * pt + math.log(pt + 1e-5) * pt for ps, pt in zip(p_s, p_t))
        return total / 6  # torch.mean over B*C = 2*3

    expected = 5 / 6 * rslad_term(S) + 1 / 6 * rslad_term(S_NAT)
    got = m.loss(Outputs(s_adv=S, s_nat=S_NAT, t_nat=T), Y, P)
    assert float(got.total) == pytest.approx(expected, rel=1e-5)
    scaled = rkdbench.create("method", "rslad", loss_scale=10.0).loss(Outputs(s_adv=S, s_nat=S_NAT, t_nat=T), Y, P)
    assert float(scaled.total) == pytest.approx(10 * expected, rel=1e-5)


def test_attack_overrides_are_named_parameters():
    m = rkdbench.create("method", "ard", attack_bn="eval", attack_steps=3)
    assert (m.attack.bn, m.attack.steps) == ("eval", 3)
    assert m.describe()["attack_bn"] == "eval"
    with pytest.raises(rkdbench.errors.ConfigError, match="attack_bn = 'frozen' is not allowed"):
        rkdbench.create("method", "ard", attack_bn="frozen")


# Overrides that switch on every term on a one-step budget (IAD's gate from epoch 0, an AKD ensemble, AdaAD's
# natural term).
ONE_STEP_OVERRIDES = {"iad": {"begin": 0}, "iad-ii": {"begin": 0}, "akd": {"ensemble": 2}, "adaad": {"alpha": 0.5}}


@pytest.mark.parametrize("name", rkdbench.list_components("method"))
def test_one_step_lowers_the_methods_own_loss(name):
    torch.manual_seed(0)
    from rkdbench.config import load_protocol
    from rkdbench.data import Splits
    from rkdbench.training.build import build_trainer

    protocol = load_protocol("digits-linf", {"train.lr": 0.001})
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    student = rkdbench.create("architecture", "cnn-tiny")
    method = rkdbench.create("method", name, **ONE_STEP_OVERRIDES.get(name, {}))
    teachers = {role: rkdbench.create("architecture", "cnn-tiny").eval() for role in method.teacher_roles}
    splits = Splits((x, y), (x, y), (x, y), 10)
    trainer = build_trainer(
        protocol, method, student, splits, device=torch.device("cpu"), workdir=None, teachers=teachers
    )
    # The outer minimisation is what one step must improve: the second evaluation reuses the first step's
    # adversarial points (and random draws), so only the weights differ.
    attack, crafted = trainer.run_attack, []
    trainer.run_attack = lambda *args: crafted[0] if crafted else crafted.append(attack(*args)) or crafted[0]
    rng = torch.get_rng_state()
    before = trainer.training_step(x, y, P).total
    trainer.optimizer.zero_grad()
    before.backward()
    trainer.optimizer.step()
    torch.set_rng_state(rng)
    after = trainer.training_step(x, y, P).total
    assert float(after.detach()) < float(before.detach())
