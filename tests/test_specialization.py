"""The student-specialization diagnostic (METHODS.md §11): stage discovery and pairing, the streamed float64
Pearson statistics against a direct two-pass computation, invariance to permuting and positively rescaling
units, a clear gap between an identical and an independent student, the GAP path, and RNG / mode hygiene."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rkdbench
from rkdbench.attacks.pgd import pgd
from rkdbench.diagnostics.specialization import (
    PearsonAccumulator,
    StageMatch,
    pair_stages,
    specialization,
    specialization_report,
    stage_outputs,
    student_pgd_points,
)
from rkdbench.errors import ConfigError

N = 64
EPS, NORM = 0.1, "Linf"
DIGITS_STAGES = ["features.0", "features.1", "features.3", "classifier:input"]


def _data(seed: int = 0, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _net(name: str, seed: int, x: torch.Tensor) -> nn.Module:
    """A random digits CNN whose BatchNorm statistics are calibrated on `x` (as a trained net's would be), so no
    unit is dead and conv-stage variances are ~0.3. The last stage's BN is scaled by 10 because averaging over
    positions leaves the penultimate features a variance of ~0.005, where the 1e-7 regularizer alone would pull
    a unit's self-correlation Var/(Var + 1e-7) ~2e-5 below 1; at ~0.5 it is ~2e-7, inside the 1e-6 tolerance."""
    torch.manual_seed(seed)
    net = rkdbench.create("architecture", name)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one pass gives the exact batch statistics
    net.train()
    with torch.no_grad():
        net(x)
        last_bn = net.features[-1][1]
        last_bn.weight.mul_(10.0)
        last_bn.bias.mul_(10.0)
    return net.eval()


def _report_values(report: dict[str, float], suffix: str) -> dict[str, float]:
    return {k: v for k, v in report.items() if k.endswith(suffix)}


# --- stages and pairing -------------------------------------------------------------------------------------


def test_default_stages_are_the_three_conv_stages_and_the_penultimate_features():
    net = rkdbench.create("architecture", "cnn-small")
    stages = stage_outputs(net)
    assert [s.name for s in stages] == DIGITS_STAGES
    assert [s.read_input for s in stages] == [False, False, False, True]
    assert stages[2].module is net.features[3] and stages[3].module is net.classifier


def test_stage_names_override_and_unknown_names_are_rejected():
    net = rkdbench.create("architecture", "cnn-small")
    stages = stage_outputs(net, ["features.1.2", "pool"])
    assert [s.module for s in stages] == [net.features[1][2], net.pool]
    with pytest.raises(ConfigError, match="did you mean"):
        stage_outputs(net, ["feature.3"])


def test_stages_pair_from_the_end_and_truncate_to_the_shorter_list():
    teacher = stage_outputs(rkdbench.create("architecture", "cnn-large"))
    student = stage_outputs(rkdbench.create("architecture", "cnn-tiny"), ["features.3", "classifier:input"])
    pairs = pair_stages(teacher, student)
    assert [(t.name, s.name) for t, s in pairs] == [
        ("features.3", "features.3"),
        ("classifier:input", "classifier:input"),
    ]
    assert [(t.name, s.name) for t, s in pair_stages(student, teacher)] == [(t.name, s.name) for t, s in pairs]


# --- the statistics -----------------------------------------------------------------------------------------


def _direct_pearson(f: np.ndarray, g: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Two-pass (centred) Pearson matrix on full activation matrices, with StatsCorr's regularizer."""
    fc, gc = f - f.mean(0), g - g.mean(0)
    cov = fc.T @ gc / len(f)
    return cov / np.sqrt((fc**2).mean(0) + eps)[:, None] / np.sqrt((gc**2).mean(0) + eps)[None, :]


def test_streamed_float64_sums_equal_the_direct_pearson_matrix():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, 3))
    f = np.maximum(latent @ rng.normal(size=(3, 6)) + 0.5, 0) + 2.0  # offset means: the one-pass formula's weak spot
    f = f.astype(np.float32).astype(np.float64)  # exactly representable: f goes in as float32, as activations do
    g = np.concatenate([f[:, :2] * 3.0 + 1.0, rng.normal(size=(500, 4))], axis=1)
    acc = PearsonAccumulator()
    for i in range(0, 500, 37):  # uneven chunks; float32 sums would miss the 1e-12 below by orders of magnitude
        acc.update(torch.from_numpy(f[i : i + 37]).float(), torch.from_numpy(g[i : i + 37]))
    expected = _direct_pearson(f, g)
    assert acc.count == 500
    np.testing.assert_allclose(acc.correlation().numpy(), expected, rtol=0, atol=1e-12)
    assert np.allclose(np.diag(acc.correlation().numpy()[:2, :2]), 1.0, atol=1e-6)  # affine copies correlate fully


def _captured(net: nn.Module, x: torch.Tensor, module: nn.Module, read_input: bool, batch: int) -> np.ndarray:
    """The stage's activations over all of `x`, captured by the test's own hook, in batches like the streamer's."""
    out: list[torch.Tensor] = []
    if read_input:
        handle = module.register_forward_pre_hook(lambda m, i: out.append(i[0].detach().clone()))
    else:
        handle = module.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    with torch.no_grad():
        for i in range(0, len(x), batch):
            net(x[i : i + batch])
    handle.remove()
    return torch.cat(out).double().numpy()


def _rows(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1]) if a.ndim == 4 else a


def test_network_statistics_streamed_in_batches_of_3_equal_a_direct_computation():
    x, _ = _data(n=20)
    teacher, student = _net("cnn-small", 0, x), _net("cnn-tiny", 1, x)
    matches = specialization(teacher, student, x, batch_size=3)
    t_stages, s_stages = stage_outputs(teacher), stage_outputs(student)
    for match, t, s in zip(matches, t_stages, s_stages):
        f = _rows(_captured(teacher, x, t.module, t.read_input, 3))
        g = _rows(_captured(student, x, s.module, s.read_input, 3))
        assert match.count == len(f) == len(g) and not match.pooled
        np.testing.assert_allclose(match.corr.numpy(), _direct_pearson(f, g), rtol=0, atol=1e-9)
    assert [m.count for m in matches] == [20 * 64, 20 * 64, 20 * 16, 20]  # (sample × position) observations
    whole = specialization(teacher, student, x, batch_size=len(x))  # batching changes only float32 rounding
    for a, b in zip(matches, whole):
        np.testing.assert_allclose(a.corr.numpy(), b.corr.numpy(), rtol=0, atol=1e-5)


def test_mismatched_spatial_sizes_pair_through_global_average_pooling():
    x, _ = _data(n=30)
    teacher, student = _net("cnn-small", 0, x), _net("cnn-tiny", 1, x)
    (match,) = specialization(
        teacher, student, x, batch_size=7, teacher_stages=["features.0"], student_stages=["features.3"]
    )  # 16 channels at 8×8 vs 32 channels at 4×4
    assert match.pooled and match.corr.shape == (16, 32) and match.count == 30
    f = _captured(teacher, x, teacher.features[0], False, 7).mean(axis=(2, 3))
    g = _captured(student, x, student.features[3], False, 7).mean(axis=(2, 3))
    np.testing.assert_allclose(match.corr.numpy(), _direct_pearson(f, g), rtol=0, atol=1e-9)


class _InPlaceAfterStage(nn.Module):
    """A stage whose output the forward pass then rewrites in place (as residual `+=` or inplace ReLUs do)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Sequential(nn.Linear(4, 5), nn.ReLU()))
        self.classifier = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        h.pow_(3)
        return self.classifier(h)


def test_stage_activations_are_read_before_later_in_place_ops():
    torch.manual_seed(0)
    teacher, student, x = _InPlaceAfterStage(), _InPlaceAfterStage(), torch.randn(40, 4)
    (match,) = specialization(
        teacher, student, x, batch_size=8, teacher_stages=["features.0"], student_stages=["features.0"]
    )
    with torch.no_grad():
        f, g = teacher.features(x).double().numpy(), student.features(x).double().numpy()
    np.testing.assert_allclose(match.corr.numpy(), _direct_pearson(f, g), rtol=0, atol=1e-9)


# --- the metric's behaviour ---------------------------------------------------------------------------------


def test_summary_takes_the_best_student_unit_per_teacher_unit():
    corr = torch.tensor([[0.95, 0.2, -1.0], [0.1, 0.5, 0.3]], dtype=torch.float64)  # 2 teacher × 3 student units
    match = StageMatch("t", "s", corr, torch.tensor([1.0, 0.0], dtype=torch.float64), count=10, pooled=False)
    assert match.summary() == pytest.approx(
        {"mean_best": 0.725, "min_best": 0.5, "max_best": 0.95, "frac_matched": 0.5, "n_units": 2.0}
    )
    assert match.summary(threshold=0.4)["frac_matched"] == 1.0
    assert match.summary(active_only=True) == pytest.approx(
        {"mean_best": 0.95, "min_best": 0.95, "max_best": 0.95, "frac_matched": 1.0, "n_units": 1.0}
    )


def _assert_all_matched(report: dict[str, float]) -> None:
    for prefix in ("spec.clean", "spec.adv"):
        for suffix in ("mean_best", "min_best", "frac_matched"):
            values = {k: v for k, v in _report_values(report, suffix).items() if k.startswith(prefix)}
            assert len(values) == (5 if suffix != "min_best" else 4)  # 4 stages (+ the overall mean)
            for key, value in values.items():
                assert value == pytest.approx(1.0, abs=1e-6), key


def test_a_student_equal_to_the_teacher_matches_every_unit_on_clean_and_pgd_inputs():
    x, y = _data()
    teacher = _net("cnn-small", 0, x)
    report = specialization_report(teacher, copy.deepcopy(teacher), x, y, EPS, NORM, steps=5, batch_size=32)
    _assert_all_matched(report)
    # Comparing a network with itself (shared modules) records each pass once and gives the same answer.
    assert specialization_report(teacher, teacher, x, y, EPS, NORM, steps=5, batch_size=32) == pytest.approx(report)


def _permute_and_rescale(
    net: nn.Module, stage: int, consumer: nn.Module, perm: torch.Tensor, scale: torch.Tensor
) -> None:
    """Student channel k := scale[k] · teacher channel perm[k] at `features[stage]` (ReLU is positively
    homogeneous, so scaling BN's γ and β scales the stage output); `consumer` undoes it on its input side."""
    conv, bn = net.features[stage][0], net.features[stage][1]
    with torch.no_grad():
        conv.weight.copy_(conv.weight[perm])
        bn.weight.copy_(bn.weight[perm] * scale)
        bn.bias.copy_(bn.bias[perm] * scale)
        bn.running_mean.copy_(bn.running_mean[perm])
        bn.running_var.copy_(bn.running_var[perm])
        view = (1, -1, 1, 1) if consumer.weight.dim() == 4 else (1, -1)
        consumer.weight.copy_(consumer.weight[:, perm] / scale.view(view))


def test_correlation_is_invariant_to_permuting_and_positively_rescaling_units():
    x, y = _data()
    teacher = _net("cnn-small", 0, x)
    student = copy.deepcopy(teacher)
    g = torch.Generator().manual_seed(1)
    perm0, perm2 = torch.randperm(16, generator=g), torch.randperm(64, generator=g)
    _permute_and_rescale(student, 0, student.features[1][0], perm0, 1.0 + torch.rand(16, generator=g))
    _permute_and_rescale(student, 3, student.classifier, perm2, 1.0 + torch.rand(64, generator=g))
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x), atol=1e-4)  # the same function, relabelled units
    matches = specialization(teacher, student, x)
    # The best match of teacher unit j is the student unit carrying it: k with perm[k] = j.
    assert torch.equal(matches[0].corr.argmax(1), torch.argsort(perm0))
    assert torch.equal(matches[2].corr.argmax(1), torch.argsort(perm2))
    assert torch.equal(matches[3].corr.argmax(1), torch.argsort(perm2))
    assert not torch.equal(perm2, torch.arange(64))  # so a diagonal-only reading would fail here
    _assert_all_matched(specialization_report(teacher, student, x, y, EPS, NORM, steps=5, batch_size=32))


def test_an_independent_random_student_is_clearly_unspecialized():
    """Independent random nets on iid-pixel inputs: a teacher unit counts as matched only if one student unit
    explains ≥ 81% of its variance (ρ ≥ 0.9), which unrelated random filters essentially never do (every
    stage gives 0 of 16–64 units across seeds and student widths; mean best match 0.3–0.45). A bound of 0.1 on
    the fraction and 0.7 on the mean leaves wide margins while an identical student scores 1.0 on both."""
    x, y = _data()
    teacher = _net("cnn-small", 0, x)
    random_report = specialization_report(teacher, _net("cnn-tiny", 1, x), x, y, EPS, NORM, steps=5, batch_size=32)
    equal_report = specialization_report(teacher, copy.deepcopy(teacher), x, y, EPS, NORM, steps=5, batch_size=32)
    for prefix in ("spec.clean", "spec.adv"):
        assert random_report[f"{prefix}.mean_best"] < 0.7
        assert random_report[f"{prefix}.frac_matched"] <= 0.1
        assert equal_report[f"{prefix}.mean_best"] - random_report[f"{prefix}.mean_best"] > 0.3
        for i in range(4):
            assert random_report[f"{prefix}.stage{i}.max_best"] < 1.0 - 1e-3


def test_active_only_drops_dead_teacher_units():
    x, y = _data()
    teacher = _net("cnn-small", 0, x)
    with torch.no_grad():  # unit 0 of stage 0 is always 0 after the ReLU: variance 0, correlation 0
        teacher.features[0][1].weight[0] = 0.0
        teacher.features[0][1].bias[0] = -1.0
    student = copy.deepcopy(teacher)
    every = specialization_report(teacher, student, x, y, EPS, NORM, steps=1, batch_size=32)
    active = specialization_report(teacher, student, x, y, EPS, NORM, steps=1, batch_size=32, active_only=True)
    assert every["spec.clean.stage0.min_best"] == 0.0 and every["spec.clean.stage0.n_units"] == 16
    assert every["spec.clean.stage0.frac_matched"] == pytest.approx(15 / 16)
    assert active["spec.clean.stage0.n_units"] == 15
    assert active["spec.clean.stage0.min_best"] == pytest.approx(1.0, abs=1e-6)
    assert active["spec.clean.frac_matched"] == pytest.approx(1.0, abs=1e-6)


# --- the report's contract ----------------------------------------------------------------------------------


def test_report_names_leave_the_global_rng_and_module_modes_alone_and_are_deterministic():
    x, y = _data()
    teacher, student = _net("cnn-small", 0, x), _net("cnn-tiny", 1, x)
    teacher.train()
    student.train()
    student.features[0][1].eval()  # a per-module mode that a blanket train()/eval() restore would lose
    running = [b.clone() for b in student.buffers()]
    state = torch.get_rng_state()
    report = specialization_report(teacher, student, x, y, EPS, NORM, steps=3, seed=7, batch_size=32)
    assert torch.equal(torch.get_rng_state(), state)
    assert teacher.training and all(m.training for m in teacher.modules())
    assert student.training and student.features[1][1].training and not student.features[0][1].training
    assert all(torch.equal(a, b) for a, b in zip(running, student.buffers()))  # eval mode: BN statistics untouched
    stage_keys = ("mean_best", "min_best", "max_best", "frac_matched", "n_units")
    expected = {f"spec.{kind}.stage{i}.{key}" for kind in ("clean", "adv") for i in range(4) for key in stage_keys}
    expected |= {f"spec.{kind}.{key}" for kind in ("clean", "adv") for key in ("mean_best", "frac_matched")}
    assert set(report) == expected and all(isinstance(v, float) for v in report.values())
    again = specialization_report(teacher, student, x, y, EPS, NORM, steps=3, seed=7, batch_size=32)
    assert again == report
    other_seed = specialization_report(teacher, student, x, y, EPS, NORM, steps=3, seed=8, batch_size=32)
    assert other_seed["spec.adv.mean_best"] != report["spec.adv.mean_best"]
    assert {k: v for k, v in other_seed.items() if k.startswith("spec.clean")} == {
        k: v for k, v in report.items() if k.startswith("spec.clean")
    }


def test_adversarial_points_are_pgd_on_the_student_cross_entropy_with_step_eps_over_4():
    x, y = _data()
    student = _net("cnn-tiny", 1, x)
    x_adv = student_pgd_points(student, x, y, eps=EPS, norm=NORM, steps=3, seed=5, batch_size=N)
    reference = pgd(
        lambda xa: F.cross_entropy(student(xa), y, reduction="none"),
        x,
        eps=EPS,
        step_size=EPS / 4,
        steps=3,
        norm=NORM,
        init="uniform",
        generator=torch.Generator().manual_seed(5),
    )
    assert torch.equal(x_adv, reference)
    assert float((x_adv - x).abs().max()) == pytest.approx(EPS, rel=1e-5)
