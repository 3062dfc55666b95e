"""`mtard`: the two KL terms (RSLAD's /C form) weighted by adaptive weights held as tensors in `self.state`,
updated per §8.3 (first batch sets L0, eta = 0.025, used on the batch that produced them), eta decay, and the
B-MTARD temperature updates."""

import math

import pytest
import torch

from rkdbench import Outputs, Progress
from rkdbench.errors import ConfigError
from rkdbench_plugins.methods.mtard import MTARD


def rslad_term(hand, s, t, tau_t=1.0):
    total = 0.0
    for si, ti in zip(hand.rows(s), hand.rows(t)):
        p_t, p_s = hand.softmax(ti, tau_t), hand.softmax(si)
        total += sum(-math.log(ps) * pt + math.log(pt + 1e-5) * pt for ps, pt in zip(p_s, p_t))
    return total / 6  # mean over B*C


def entropy(hand, t, tau):
    return sum(math.log(p + 1e-5) * p for r in hand.rows(t) for p in hand.softmax(r, tau)) / 6


def outputs(s, s_nat, t_adv, t_nat):
    return Outputs(s_adv=s, s_nat=s_nat, t_adv=t_adv, teachers={"natural": {"t_nat": t_nat}})


def test_mtard_contract_and_initial_state():
    m = MTARD()
    assert m.teacher_roles == ("robust", "natural")
    assert m.needs == {"s_adv", "s_nat", "t_adv", "natural:t_nat"}
    a = m.attack
    assert (a.init, a.bn, a.steps, a.step_size, a.needs) == ("gauss", "eval", 10, 0.25, {"s_adv"})
    assert (m.params.eta, m.params.eta_decay_epochs, m.params.balance_temperature) == (0.025, "auto", False)
    assert set(m.state) == {"w_nat", "w_adv", "l_adv0", "l_nat0"}
    assert all(isinstance(v, torch.Tensor) for v in m.state.values())
    assert float(m.state["w_nat"]) == 0.5 and math.isnan(float(m.state["l_adv0"]))


def test_mtard_attack_objective_is_ce(hand):
    expected = [hand.ce(r, y) for r, y in zip(hand.rows(hand.S), hand.Y.tolist())]
    assert MTARD().attack_objective(Outputs(s_adv=hand.S), hand.Y).tolist() == pytest.approx(expected, rel=1e-6)


def test_mtard_weights_update_after_on_step_end(hand):
    m = MTARD()
    out1 = outputs(hand.S, hand.S_NAT, hand.T_ADV, hand.T2)
    adv1, nat1 = rslad_term(hand, hand.S, hand.T_ADV), rslad_term(hand, hand.S_NAT, hand.T2)
    losses = m.loss(out1, hand.Y, Progress(0, 3))
    assert float(losses.total) == pytest.approx(0.5 * adv1 + 0.5 * nat1, rel=1e-5)  # r = 1, 1: w stays 0.5
    assert float(m.state["w_nat"]) == 0.5 and math.isnan(float(m.state["l_adv0"]))  # loss() is pure
    m.on_step_end(losses, Progress(0, 3))
    assert all(isinstance(v, torch.Tensor) for v in m.state.values())
    assert float(m.state["l_adv0"]) == pytest.approx(adv1, rel=1e-5)
    assert float(m.state["l_nat0"]) == pytest.approx(nat1, rel=1e-5)

    s2, s_nat2 = hand.S * 0.5, hand.S_NAT * 2
    adv2, nat2 = rslad_term(hand, s2, hand.T_ADV), rslad_term(hand, s_nat2, hand.T2)
    r_adv, r_nat = adv2 / adv1, nat2 / nat1
    w_nat = 0.5 - 0.025 * (0.5 - r_nat / (r_adv + r_nat))
    losses = m.loss(outputs(s2, s_nat2, hand.T_ADV, hand.T2), hand.Y, Progress(0, 3, step=1))
    assert float(losses.total) == pytest.approx((1 - w_nat) * adv2 + w_nat * nat2, rel=1e-5)
    m.on_step_end(losses, Progress(0, 3, step=1))
    assert float(m.state["w_nat"]) == pytest.approx(w_nat, rel=1e-6) != 0.5
    assert float(m.state["w_adv"]) == pytest.approx(1 - w_nat, rel=1e-6)
    assert float(m.state["l_adv0"]) == pytest.approx(adv1, rel=1e-5)  # L0 stays the first batch's


def test_mtard_eta_decays_at_listed_epochs(hand):
    m = MTARD(eta_decay_epochs=[1], loss_scale=10.0)
    assert m.params.eta_decay_epochs == (1,)
    first = m.loss(outputs(hand.S, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, Progress(0, 3))
    m.on_step_end(first, Progress(0, 3))
    adv1, nat1 = rslad_term(hand, hand.S, hand.T_ADV), rslad_term(hand, hand.S_NAT, hand.T2)
    s2 = hand.S * 0.5
    adv2, nat2 = rslad_term(hand, s2, hand.T_ADV), nat1
    r_adv, r_nat = adv2 / adv1, 1.0
    w_nat = 0.5 - 0.0025 * (0.5 - r_nat / (r_adv + r_nat))
    losses = m.loss(outputs(s2, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, Progress(1, 3))
    assert float(losses.total) == pytest.approx(10 * ((1 - w_nat) * adv2 + w_nat * nat2), rel=1e-5)


def test_b_mtard_temperatures_in_state(hand):
    m = MTARD(balance_temperature=True)
    assert float(m.state["temp_adv"]) == 1.0 and float(m.state["temp_nat"]) == 1.0
    losses = m.loss(outputs(hand.S, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, Progress(0, 3))
    m.on_step_end(losses, Progress(0, 3))
    h_adv, h_nat = entropy(hand, hand.T_ADV, 1.0), entropy(hand, hand.T2, 1.0)
    sign = math.copysign(1.0, h_adv / h_nat - 1)
    temp_adv = min(max(1 - 0.001 * sign, 1.0), 10.0)
    temp_nat = min(max(1 + 0.001 * sign, 1.0), 10.0)
    assert float(m.state["temp_adv"]) == pytest.approx(temp_adv, rel=1e-6)
    assert float(m.state["temp_nat"]) == pytest.approx(temp_nat, rel=1e-6)
    assert {temp_adv, temp_nat} == {1.0, 1.001}  # the lower one is clipped at 1

    # the next batch softens the teachers by the new temperatures; symmetric weights from lhat / mean(lhat)
    adv1, nat1 = rslad_term(hand, hand.S, hand.T_ADV), rslad_term(hand, hand.S_NAT, hand.T2)
    s2 = hand.S * 0.5
    adv2, nat2 = rslad_term(hand, s2, hand.T_ADV, temp_adv), rslad_term(hand, hand.S_NAT, hand.T2, temp_nat)
    l_adv, l_nat = adv2 / adv1, nat2 / nat1
    mean = (l_adv + l_nat) / 2
    r_adv, r_nat = l_adv / mean, l_nat / mean
    w_adv = max(0.5 - 0.025 * (0.5 - r_adv / (r_adv + r_nat)), 0.0)
    w_nat = max(0.5 - 0.025 * (0.5 - r_nat / (r_adv + r_nat)), 0.0)
    w_adv, w_nat = w_adv / (w_adv + w_nat), w_nat / (w_adv + w_nat)
    losses = m.loss(outputs(s2, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, Progress(0, 3, step=1))
    assert float(losses.total) == pytest.approx(w_adv * adv2 + w_nat * nat2, rel=1e-5)
    assert float(losses.parts["temp_adv"]) == pytest.approx(temp_adv)


def test_mtard_batchmean_reduction(hand):
    m = MTARD(kl_reduction="batchmean")
    got = m.loss(outputs(hand.S, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, Progress(0, 1)).total
    kl_adv = (
        sum(hand.kl(hand.softmax(t), hand.softmax(s)) for s, t in zip(hand.rows(hand.S), hand.rows(hand.T_ADV))) / 2
    )
    kl_nat = (
        sum(hand.kl(hand.softmax(t), hand.softmax(s)) for s, t in zip(hand.rows(hand.S_NAT), hand.rows(hand.T2))) / 2
    )
    assert float(got) == pytest.approx(0.5 * kl_adv + 0.5 * kl_nat, rel=1e-5)


def _eta_after_first_step(m: MTARD, progress: Progress, hand) -> float:
    """The eta the second step used, recovered from the weight update:
    w_nat = 0.5 - eta * (0.5 - r_nat / (r_adv + r_nat))."""
    first = m.loss(outputs(hand.S, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, progress)
    m.on_step_end(first, progress)
    adv1, adv2 = rslad_term(hand, hand.S, hand.T_ADV), rslad_term(hand, hand.S * 0.5, hand.T_ADV)
    target = 1.0 / (adv2 / adv1 + 1.0)  # r_nat = 1 (same natural term)
    losses = m.loss(outputs(hand.S * 0.5, hand.S_NAT, hand.T_ADV, hand.T2), hand.Y, progress)
    return (0.5 - float(losses.parts["w_nat"])) / (0.5 - target)


@pytest.mark.parametrize(
    "epoch, expected_eta", [(0, 0.025), (99, 0.025), (100, 0.0025), (149, 0.0025), (150, 0.00025), (199, 0.00025)]
)
def test_mtard_eta_decays_with_the_protocols_lr_milestones_by_default(hand, epoch, expected_eta):
    # the protocol's piecewise schedule x0.1 at 100 and 150 (0-based epochs at whose start the lr drops)
    progress = Progress(epoch, 200, 0, 10, lr_milestones=(100, 150))
    assert _eta_after_first_step(MTARD(), progress, hand) == pytest.approx(
        expected_eta, rel=1e-3
    )  # recovered from fp32 weights


def test_mtard_explicit_eta_decay_epochs_override_the_milestones(hand):
    progress = Progress(120, 200, 0, 10, lr_milestones=(100, 150))
    assert _eta_after_first_step(MTARD(eta_decay_epochs=[]), progress, hand) == pytest.approx(0.025, rel=1e-3)
    assert _eta_after_first_step(MTARD(eta_decay_epochs=[50, 110]), progress, hand) == pytest.approx(0.00025, rel=1e-3)
    assert MTARD(eta_decay_epochs="auto").params.eta_decay_epochs == "auto"
    with pytest.raises(ConfigError, match="eta_decay_epochs"):
        MTARD(eta_decay_epochs="sometimes")


def test_the_engine_hands_the_protocols_milestones_to_the_method(tmp_path):
    import rkdbench
    from rkdbench.config import load_protocol
    from rkdbench.data import Splits
    from rkdbench.training.engine import Trainer, TrainSetup

    seen = []

    class Probe(rkdbench.create("method", "pgd-at").__class__):
        def on_step_end(self, losses, progress):
            seen.append(progress.lr_milestones)

    splits = Splits(
        train=(torch.rand(4, 1, 8, 8), torch.arange(4)),
        val=(torch.rand(2, 1, 8, 8), torch.arange(2)),
        test=(torch.rand(2, 1, 8, 8), torch.arange(2)),
        num_classes=10,
    )
    for overrides, expected in [({"train.schedule": "piecewise", "train.milestones": [3, 7]}, (3, 7)), ({}, ())]:
        protocol = load_protocol("digits-linf", {"train.epochs": 1, "train.val_pgd_steps": 1, **overrides})
        student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        seen.clear()
        Trainer(
            TrainSetup(
                protocol=protocol,
                method=Probe(attack_steps=1),
                student=student,
                teachers={},
                splits=splits,
                seed=0,
                device=torch.device("cpu"),
                workdir=tmp_path / str(expected),
            )
        ).fit()
        assert set(seen) == {expected}  # cosine (digits-linf) has no decay epochs
