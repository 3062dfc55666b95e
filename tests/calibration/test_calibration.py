"""Calibrated wall-time predictions: the arithmetic of `predict_cell` on controlled entries, AutoAttack's two-part
cost, repetitions that disagree (injected: a busy machine's samples) flagged in one line, cached as doubtful with
their spread and measured again by the next calibration, and a short real `rkdbench calibrate` whose cache
`--dry-run --json` turns into each cell's `predicted_seconds` (and the FLOP fallback, said as such, without one)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from rkdbench.config import AttackEntry, load_suite
from rkdbench.cost.calibration import (
    AttackSample,
    Calibration,
    Linear,
    Sampler,
    TrainTiming,
    attack_key,
    attack_seconds,
    calibrate_cells,
    device_identity,
    first_stage_spec,
    predict_cell,
    train_key,
)
from rkdbench.run.cells import expand_cells
from support.cli import cli
from support.tiny_protocol import write_tiny_protocol

CPU = torch.device("cpu")


def test_linear_through_two_points_and_zero_points():
    line = Linear.through(4, 3.0, 16, 9.0)
    assert (line.fixed, line.per_point) == (1.0, 0.5)
    assert line(10) == 6.0 and line(0) == 0.0
    assert Linear.through(4, 3.0, 16, 2.0) == Linear(2.0, 0.0)  # a noisy falling pair: all fixed


def test_autoattack_pays_first_stage_on_correct_and_the_rest_on_robust_points():
    entry = {"batch_size": 100, "all": {"fixed": 10.0, "per_point": 1.0}, "first": {"fixed": 1.0, "per_point": 0.1}}
    # 250 points in chunks of 200 and 50; 90% correct, 40% robust; batches of 100 over the points left per stage
    # chunk 200: first on 180 -> (1+10) + (1+8); rest (9 + 0.9 n) on 80 -> 9 + 72
    # chunk 50: first on 45 -> 1 + 4.5; rest on 20 -> 9 + 18
    assert attack_seconds(entry, 250, 200, 0.9, 0.4) == pytest.approx(11 + 9 + 81 + 5.5 + 27)
    plain = {"batch_size": 100, "all": {"fixed": 2.0, "per_point": 0.5}}
    assert attack_seconds(plain, 250, 0, 0.9, 0.4) == pytest.approx(3 * 2.0 + 250 * 0.5)  # every point, 3 batches
    first = first_stage_spec(AttackEntry("aa", "autoattack", {"version": "standard"}))
    assert first == AttackEntry("aa", "autoattack", {"version": "custom", "attacks": ["apgd-ce"]})
    assert first_stage_spec(AttackEntry("pgd20", "pgd", {"steps": 20})) is None


def test_predict_cell_from_controlled_entries():
    # digits-all-quick: 200 test points, last and best-val checkpoints
    cell = next(c for c in expand_cells(load_suite("digits-all-quick")) if c.method == "rslad")
    calibration = Calibration(device_identity(CPU))
    calibration.train[train_key(cell)] = {"step": 0.1, "val_point": 0.01, "epoch_rest": 0.5}
    calibration.attack[attack_key(cell.protocol, "pgd20", "cnn-small", 500)] = {
        "batch_size": 500,
        "all": {"fixed": 0.2, "per_point": 0.01},
    }
    calibration.attack[attack_key(cell.protocol, "aa", "cnn-small", 500)] = {
        "batch_size": 500,
        "all": {"fixed": 10.0, "per_point": 1.0},
        "first": {"fixed": 1.0, "per_point": 0.1},
    }
    assert predict_cell(cell, calibration, (1257, 180, 360), (0.9, 0.5)) is None  # specialization not measured yet
    prediction = predict_cell(cell, calibration, (1257, 180, 360), (0.9, 0.5), specialization=False)
    # 30 epochs x (1257/64 steps x 0.1 s + 180 val points x 0.01 s + 0.5 s)
    assert prediction.train == pytest.approx(30 * (1257 / 64 * 0.1 + 1.8 + 0.5))
    # 200 points, two selections: PGD-20 0.2 + 200 x 0.01; AutoAttack (1 + 180 x 0.1) + (9 + 100 x 0.9)
    assert prediction.parts["eval.pgd20"] == pytest.approx(2 * 2.2)
    assert prediction.parts["eval.aa"] == pytest.approx(2 * (19 + 99))
    assert prediction.total == pytest.approx(prediction.train + 4.4 + 236)


@pytest.fixture
def tiny_suite(tmp_path):
    protocol = tmp_path / "tiny.toml"
    write_tiny_protocol(protocol, "tiny")
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f'[suite]\nname = "tiny"\nprotocol = "{protocol}"\nmethods = ["pgd-at"]\nstudents = ["cnn-tiny"]\n'
        "seeds = [0, 1]\n"
    )
    return str(suite)


class Injected(Sampler):
    """Measures nothing: gives the training step's repetitions it was made with (seconds per step) and quiet ones
    for the attack and the per-point diagnostics, counting what was asked."""

    def __init__(self, steps: list[float]) -> None:
        self.steps, self.calls = steps, Counter()

    def training(self, cell, device, steps, clock, repeats):
        self.calls["training"] += 1
        return [TrainTiming(step=s, val_point=0.001, epoch_rest=0.01) for s in self.steps]

    def attack(self, *args):
        self.calls["attack"] += 1
        return [AttackSample(4, 0.10, 16, 0.20), AttackSample(4, 0.11, 16, 0.21), AttackSample(4, 0.10, 16, 0.20)]

    def per_point(self, *args):
        self.calls["per_point"] += 1
        return [0.010, 0.010, 0.011]


def test_repetitions_that_disagree_are_said_cached_as_doubtful_and_measured_again(tiny_suite):
    cells = expand_cells(load_suite(tiny_suite))  # two seeds: one training combination
    key = train_key(cells[0])
    lines: list[str] = []
    busy = Injected([0.084, 1.365, 0.090])  # one repetition 16x the others, as on the busy machine of issue 19
    calibration = calibrate_cells(cells, CPU, Calibration.load(CPU), say=lines.append, sampler=busy)
    assert busy.calls == {"training": 1, "attack": 1}  # not measured again for the second seed in the same call
    assert calibration.train[key]["step"] == 0.090  # the median
    assert calibration.spread[key] == {"repeats": 3, "spread": round((1.365 - 0.084) / 0.090, 4), "doubtful": True}
    [doubt] = [line for line in lines if line.startswith("doubtful")]
    assert doubt.startswith(
        "doubtful: train pgd-at / cnn-tiny / none: 3 repetitions disagree (84, 1365, 90 ms/step: 1423% apart, "
        "tolerance 30%"
    )
    assert "measured again by the next `rkdbench calibrate`" in doubt
    [attack] = calibration.attack
    assert calibration.spread[attack] == {"repeats": 3, "spread": 0.1, "doubtful": False}  # t1: 0.10-0.11
    assert calibration.attack[attack]["all"] == pytest.approx({"fixed": 0.2 - 16 * 0.1 / 12, "per_point": 0.1 / 12})
    assert Calibration.load(CPU).spread == calibration.spread  # the file carries each entry's spread

    lines.clear()
    quiet = Injected([0.084, 0.086, 0.085])
    calibration = calibrate_cells(cells, CPU, Calibration.load(CPU), say=lines.append, sampler=quiet)
    assert quiet.calls == {"training": 1}  # only the doubtful entry; the quiet attack entry stands
    assert calibration.train[key]["step"] == 0.085 and not calibration.spread[key]["doubtful"]
    assert not [line for line in lines if line.startswith("doubtful")]
    # a tighter tolerance flags what the default let through
    calibration = calibrate_cells(
        cells, CPU, Calibration.load(CPU), redo=True, tolerance=0.01, say=lines.append, sampler=quiet
    )
    assert calibration.spread[key]["doubtful"]
    assert any(line.startswith("doubtful: train") and "tolerance 1%" in line for line in lines)
    # a doubt names the quantity whose repetitions were furthest apart: here the attack's batch of 4 points
    assert any(
        line.startswith(
            "doubtful: attack pgd2 on cnn-tiny (batch 32): 3 repetitions disagree (0.1, 0.11, 0.1 s/batch of 4 points: "
            "10% apart, tolerance 1%"
        )
        for line in lines
    )


def test_calibrate_then_dry_run_predicts_from_the_cache(tiny_suite, tmp_path, capsys):
    assert cli("run", tiny_suite, "--dry-run", "--json") == 0
    fallback = json.loads(capsys.readouterr().out)
    assert [c["predicted_seconds"]["source"] for c in fallback["cells"]] == ["flops", "flops"]
    assert fallback["total_predicted_seconds"] is None
    assert cli("run", tiny_suite, "--dry-run") == 0
    assert "fall back to the FLOP-based assumption" in capsys.readouterr().out

    assert cli("calibrate", tiny_suite, "--steps", "1", "--points", "4", "--repeat", "2") == 0
    assert "calibration saved to" in capsys.readouterr().out
    calibration = Calibration.load(CPU, tmp_path / "calibration")
    assert calibration.identity == device_identity(CPU) and len(calibration.train) == 1  # both seeds: one combination
    assert set(calibration.spread) == set(calibration.train) | set(calibration.attack)
    assert {s["repeats"] for s in calibration.spread.values()} == {2}
    [step] = calibration.train.values()
    [attack] = calibration.attack.values()
    assert cli("run", tiny_suite, "--dry-run", "--json") == 0
    planned = json.loads(capsys.readouterr().out)
    predicted = planned["cells"][0]["predicted_seconds"]
    assert predicted["source"] == "calibration"
    n_train, n_val = 1257, 180  # digits' split sizes
    assert predicted["train"] == pytest.approx(
        2 * (n_train / 128 * step["step"] + n_val * step["val_point"] + step["epoch_rest"]), abs=0.01
    )
    pgd = Linear(**attack["all"])
    assert predicted["eval"] == pytest.approx(pgd(32) + pgd(8), abs=0.01)  # 40 points in batches of 32
    assert planned["total_predicted_seconds"] == pytest.approx(2 * (predicted["train"] + predicted["eval"]), abs=0.05)
    assert cli("run", tiny_suite, "--dry-run") == 0
    assert "predicted wall time on" in capsys.readouterr().out
