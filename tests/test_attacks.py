"""Attack plugins: parity of `autoattack` with a direct pyautoattack run, the single-attack plugins (apgd-ce,
apgd-t, fab-t, square, cw, fgsm), RNG isolation, determinism, and the input checks run before an attack."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rkdbench
from rkdbench.attacks.base import check_attack_inputs, predict, preserved_rng
from rkdbench.errors import ConfigError
from rkdbench_plugins.attacks.pgd import margin_loss

EPS, SEED, BATCH = 0.1, 0, 16  # 24 points in batches of 16: AutoAttack's first stage sees two batches

# Cheap settings for the property tests; the parity test runs AutoAttack's full standard settings.
CHEAP = {
    "apgd-ce": {"steps": 20},
    "apgd-t": {"steps": 10},
    "fab-t": {"steps": 10},
    "square": {"queries": 200},
    "cw": {"steps": 10},
    "fgsm": {},
}
FROM_CORRECT = ("apgd-ce", "apgd-t", "fab-t", "square")  # attacks that only attack clean-correct points
CASES = [(name, "Linf", EPS) for name in CHEAP] + [(name, "L2", 0.5) for name in CHEAP if name != "fgsm"]


@pytest.fixture(scope="module")
def trained(tiny_mlp):
    """The 64-16-10 MLP after 300 plain-CE steps and the first 24 test points: at eps 0.1 AutoAttack leaves some
    robust (APGD-T breaks one more than APGD-CE) in ~3 s, where cnn-tiny's forward made it ~15 s."""
    return tiny_mlp(300)


@pytest.fixture(scope="module")
def autoattack_pair(trained):
    """Our plugin and a direct pyautoattack run (same model, data, seed, batch size), and whether the global
    RNG survived our plugin. Shared by several tests: each standard AutoAttack run costs seconds."""
    from pyautoattack import AutoAttack

    model, x, y = trained
    state = torch.get_rng_state()
    ours = rkdbench.create("attack", "autoattack", norm="Linf", eps=EPS, seed=SEED, batch_size=BATCH).run(model, x, y)
    rng_kept = torch.equal(state, torch.get_rng_state())
    direct, _ = AutoAttack(
        model, norm="Linf", eps=EPS, seed=SEED, version="standard", device="cpu"
    ).run_standard_evaluation(x, y, batch_size=BATCH)
    return ours, direct, rng_kept


def test_autoattack_plugin_matches_pyautoattack(trained, autoattack_pair):
    model, x, y = trained
    ours, direct, rng_kept = autoattack_pair
    correct = predict(model, x) == y
    assert 0 < int(ours.robust.sum()) < int(correct.sum())  # a meaningful comparison: some robust, some broken
    assert torch.equal(ours.robust, predict(model, direct) == y)
    assert torch.equal(ours.x_adv, direct)
    assert rng_kept
    assert set(ours.info["per_attack"]) == {"apgd-ce", "apgd-t", "fab-t", "square"}


def test_apgd_ce_reproduces_autoattack_first_stage(trained, autoattack_pair):
    model, x, y = trained
    ours = autoattack_pair[0]
    first = rkdbench.create("attack", "apgd-ce", norm="Linf", eps=EPS, seed=SEED, batch_size=BATCH).run(model, x, y)
    assert first.robust_accuracy == pytest.approx(ours.info["per_attack"]["apgd-ce"], abs=1e-4)
    assert bool((ours.robust <= first.robust).all())  # later stages only ever break more points


@pytest.mark.parametrize("name, norm, eps", CASES)
def test_attack_result_is_consistent_and_in_the_ball(trained, name, norm, eps):
    model, x, y = trained
    state = torch.get_rng_state()
    result = rkdbench.create("attack", name, norm=norm, eps=eps, seed=SEED, batch_size=BATCH, **CHEAP[name]).run(
        model, x, y
    )
    assert torch.equal(torch.get_rng_state(), state)  # pyautoattack reseeds the global RNG: it must be restored
    assert torch.equal(result.robust, predict(model, result.x_adv) == y)
    delta = (result.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    if name in FROM_CORRECT:
        assert bool((result.robust <= (predict(model, x) == y)).all())


def test_pyautoattack_reseeds_the_global_rng_so_restoring_it_matters(trained):
    from pyautoattack.square import SquareAttack

    model, x, y = trained
    state = torch.get_rng_state()
    SquareAttack(model, n_queries=5, eps=EPS, seed=SEED, device="cpu").perturb(x, y)
    assert not torch.equal(torch.get_rng_state(), state)
    torch.set_rng_state(state)


def test_fgsm_on_a_linear_model_is_the_hand_computed_step():
    torch.manual_seed(1)
    linear = nn.Linear(4, 3)
    model = nn.Sequential(nn.Flatten(), linear).eval()
    x, y, eps = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2]), 0.1
    result = rkdbench.create("attack", "fgsm", norm="Linf", eps=eps).run(model, x, y)
    with torch.no_grad():
        flat = x.flatten(1)
        grad = (torch.softmax(linear(flat), 1) - F.one_hot(y, 3).float()) @ linear.weight  # d CE / d x
        expected = (flat + eps * grad.sign()).clamp(0, 1).view_as(x)
    assert torch.allclose(result.x_adv, expected, atol=1e-6)
    assert torch.equal(result.robust, linear(expected.flatten(1)).argmax(1) == y)
    with pytest.raises(ConfigError, match="norm 'L2'"):
        rkdbench.create("attack", "fgsm", norm="L2", eps=0.5)


def test_cw_is_pgd_on_the_margin(trained):
    model, x, y = trained
    cw = rkdbench.create("attack", "cw", norm="Linf", eps=EPS)
    assert (cw.params.steps, cw.params.step_size, cw.params.kappa, cw.params.loss) == (30, 0.25, 50.0, "margin")
    with torch.no_grad():
        assert torch.equal(cw._objective(model, y)(x), margin_loss(model(x), y, 50.0))
    with pytest.raises(ConfigError, match="margin"):
        rkdbench.create("attack", "cw", norm="Linf", eps=EPS, loss="ce")


def test_targets_are_capped_below_the_number_of_classes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5)).eval()  # 5 classes: at most 4 targets, not 9
    x = torch.rand(12, 1, 2, 2)
    y = predict(model, x)  # every point clean-correct, so every point is attacked
    for name in ("apgd-t", "fab-t"):
        result = rkdbench.create("attack", name, norm="Linf", eps=0.1, steps=5).run(model, x, y)
        assert result.info["attacked"] == len(y)
    three = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    with pytest.raises(ConfigError, match="at least 4 classes"):
        rkdbench.create("attack", "apgd-t", norm="Linf", eps=0.1, steps=5).run(three, x, predict(three, x))


@pytest.mark.parametrize("name", ["apgd-ce", "square", "cw"])
def test_same_seed_gives_identical_results(trained, name):
    model, x, y = trained
    runs = [
        rkdbench.create("attack", name, norm="Linf", eps=EPS, seed=3, batch_size=BATCH, **CHEAP[name]).run(model, x, y)
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv) and torch.equal(runs[0].robust, runs[1].robust)


def test_inputs_outside_the_unit_box_are_refused_naming_the_range(trained):
    model, x, y = trained
    with pytest.raises(ConfigError, match=r"\[0, 1\].*min 0, max 255"):
        rkdbench.create("attack", "autoattack", norm="Linf", eps=EPS).run(model, x * 255, y)
    from rkdbench.config import load_protocol
    from rkdbench.evaluation.evaluate import evaluate

    with pytest.raises(ConfigError, match="evaluation: inputs must be in"):
        evaluate(model, load_protocol("digits-linf"), x * 255, y)


def test_probability_outputs_are_refused(trained):
    model, x, y = trained
    softmax_model = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    with pytest.raises(ConfigError, match="probabilities"):
        rkdbench.create("attack", "autoattack", norm="Linf", eps=EPS).run(softmax_model, x, y)
    check_attack_inputs(nn.Sequential(model, nn.LogSoftmax(dim=1)).eval(), x)  # log-probabilities are logits


def test_train_mode_model_warns_and_is_attacked_in_eval_mode(trained):
    _, x, y = trained
    with preserved_rng():
        torch.manual_seed(0)
        model = rkdbench.create("architecture", "cnn-tiny").eval()  # BatchNorm: train mode would change the model
    training = copy.deepcopy(model).train()
    training.features[0][1].eval()  # a mixed mode (frozen BatchNorm) must come back as it was
    stats = [b.clone() for b in training.buffers()]
    attack = rkdbench.create("attack", "apgd-ce", norm="Linf", eps=EPS, seed=SEED, batch_size=BATCH, steps=20)
    with pytest.warns(UserWarning, match="train mode"):
        result = attack.run(training, x, y)
    assert training.training and not training.features[0][1].training
    assert all(torch.equal(a, b) for a, b in zip(stats, training.buffers()))  # no BatchNorm statistics updated
    assert torch.equal(result.x_adv, attack.run(model, x, y).x_adv)


def test_unknown_autoattack_version_is_an_error():
    with pytest.raises(ConfigError, match="'version' = 'fast' is not allowed; allowed: standard, plus, rand, custom"):
        rkdbench.create("attack", "autoattack", norm="Linf", eps=EPS, version="fast")
