"""Stochastic weight averaging as a protocol option: the equal-weight running mean by hand, BatchNorm statistics
recomputed with cumulative averaging, the engine's averaged student and its bit-for-bit resume, config validation,
and the `swa` selection evaluated next to the raw student end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rkdbench
from rkdbench.config import load_protocol
from rkdbench.errors import ConfigError
from rkdbench.training.swa import WeightAverage, recompute_batchnorm
from support.cli import TINY, cli, runs_of, suite_file
from support.training import Interrupt, digits_trainer, kill_after_first_epoch, states_equal


def test_running_mean_by_hand():
    model = nn.Linear(1, 1, bias=False)
    average = WeightAverage(model)
    for value in (1.0, 3.0, 8.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
    assert average.count == 3 and float(average.averaged(model).weight.detach()) == pytest.approx(4.0)
    restored = WeightAverage(model)
    restored.load_state_dict(average.state_dict())
    assert restored.count == 3 and float(restored.mean[0]) == pytest.approx(4.0)


def test_batchnorm_statistics_are_the_cumulative_mean_over_one_pass():
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(2))
    model[1].running_mean.fill_(100.0)
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]).view(4, 2, 1, 1)
    recompute_batchnorm(model, x, batch_size=2, aug="none", seed=0)
    # batch means (1, 2) and (5, 6): cumulative (equal-weight) average (3, 4), not an exponential one
    assert model[1].running_mean.tolist() == pytest.approx([3.0, 4.0])
    assert model[1].momentum == 0.1  # restored


def _swa_trainer(workdir, epochs=3, swa_start=1):
    overrides = {
        "train.lr": 0.05,
        "train.epochs": epochs,
        "train.swa_start": swa_start,
        "eval.selections": ["last", "swa"],
    }
    method = rkdbench.create("method", "pgd-at", attack_steps=1)
    return digits_trainer(method, workdir, overrides=overrides, student="cnn-small")[0]


def test_engine_averages_the_epoch_end_weights_from_swa_start(tmp_path):
    trainer = _swa_trainer(tmp_path)
    snapshots = []
    trainer.on_epoch = lambda epoch, metrics: snapshots.append(
        [p.detach().clone() for p in trainer.s.student.parameters()]
    )
    trainer.fit()
    saved = torch.load(trainer.swa_path, weights_only=True)
    assert saved["count"] == 2  # epochs 1 and 2 of 0..2
    names = [n for n, _ in trainer.s.student.named_parameters()]
    for i, name in enumerate(names):
        expected = (snapshots[1][i] + snapshots[2][i]) / 2
        assert torch.allclose(saved["model"][name], expected, atol=1e-6), name
    bn = [k for k in saved["model"] if k.endswith("running_mean")]
    assert bn and any(not torch.equal(saved["model"][k], trainer.s.student.state_dict()[k]) for k in bn)


def test_swa_state_resumes_bit_for_bit(tmp_path):
    straight = _swa_trainer(tmp_path / "a", swa_start=0)
    straight.fit()
    killed = _swa_trainer(tmp_path / "b", swa_start=0)
    killed.on_epoch = kill_after_first_epoch
    with pytest.raises(Interrupt):
        killed.fit()
    resumed = _swa_trainer(tmp_path / "b", swa_start=0)
    resumed.fit()
    a, b = (torch.load(t.swa_path, weights_only=True) for t in (straight, resumed))
    assert states_equal(a, b)


def test_swa_config_is_validated():
    with pytest.raises(ConfigError, match="contains 'swa' exactly when train.swa_start is set"):
        load_protocol("digits-linf", {"eval.selections": ["last", "swa"]})
    with pytest.raises(ConfigError, match="contains 'swa' exactly when"):
        load_protocol("digits-linf", {"train.swa_start": 3})
    with pytest.raises(ConfigError, match="swa_start = 30 must be below train.epochs = 30"):
        load_protocol("digits-linf", {"train.swa_start": 30, "eval.selections": ["last", "swa"]})
    protocol = load_protocol("digits-linf", {"train.swa_start": 3, "eval.selections": ["last", "best-val", "swa"]})
    assert protocol.train.swa_start == 3


@pytest.mark.slow
def test_swa_selection_is_evaluated_and_tabulated_next_to_the_raw_student(tmp_path, capsys):
    import io

    import pandas as pd

    results = tmp_path / "results"
    args = [
        "run",
        suite_file(tmp_path, ["pgd-at"]),
        *TINY,
        "--set",
        "train.swa_start=0",
        "--set",
        'eval.selections=["last", "swa"]',
        "--results",
        str(results),
        "--quiet",
    ]
    assert cli(*args) == 0
    _, [run] = runs_of(results)
    m = run.data.metrics
    assert m["swa.n_averaged"] == 2 and 0 <= m["swa.aa_acc"] <= m["swa.clean_acc"] <= 1
    assert "swa.flags" in {k.removeprefix("rkdbench.") for k in run.data.tags}
    capsys.readouterr()
    assert (
        cli("leaderboard", "--results", str(results), "--format", "csv", "--selection", "swa", "--no-log-to-mlflow")
        == 0
    )
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.loc[0, "aa_mean"] == pytest.approx(100 * m["swa.aa_acc"], abs=1e-3)
