"""The CIFAR protocols and suites, `--dry-run` cost estimates with missing teachers, `--shard`, the GPU-readiness
flags exercised on the CPU, and one `cifar10-linf-8` cell end to end on CIFAR-format fixture files with the real
pyautoattack ResNet-18 as teacher and the budgets shrunk by `--set`."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import nn

import rkdbench
from rkdbench.config import builtin_names, load_protocol, load_suite
from rkdbench.cost.estimate import forward_flops, training_passes
from rkdbench.data import Splits
from rkdbench.run.cells import expand_cells
from rkdbench.run.options import CellOutcome
from rkdbench.run.progress import suite_status
from rkdbench.tracking import Tracker
from rkdbench.training.engine import Trainer, TrainSetup, gpu_features
from support.cifar_files import write_cifar10
from support.cli import cli


def test_every_builtin_protocol_and_suite_loads_and_expands():
    for name in builtin_names("protocols"):
        load_protocol(name)
    for name in builtin_names("suites"):
        assert expand_cells(load_suite(name))
    standard = load_suite("cifar10-standard")
    cells = expand_cells(standard)
    assert len(cells) == 22 * 2 * 3 and {c.student for c in cells} == {"resnet-18", "mobilenet-v2"}
    assert {c.teacher for c in cells} == {"cifar10/Linf/Zhang2019Theoretically", "none"}
    protocol = load_protocol("cifar10-linf-8")
    assert math.isclose(protocol.threat.eps, 8 / 255)
    train = protocol.train
    assert (train.epochs, train.lr, train.weight_decay, train.batch_size, train.milestones) == (
        200,
        0.1,
        2e-4,
        128,
        (100, 150),
    )
    assert protocol.inputs.augment == "pad4-crop-flip"
    assert [a.attack for a in protocol.eval.attacks.values()] == ["pgd", "cw", "autoattack"]
    assert load_protocol("cifar10-linf-8-paper-ard").train.milestones == (100,)  # ARD's one decay
    assert load_protocol("cifar10-linf-8-paper-rslad").train.milestones == (215, 260, 285)
    assert load_protocol("cifar10-linf-8-short").eval.n_examples == 1000
    hundred = {c.method: c.method_params for c in expand_cells(load_suite("cifar100-standard"))}
    assert hundred["rslad"]["loss_scale"] == 10.0 and hundred["mtard"]["loss_scale"] == 10.0
    assert hundred["igdm"]["alpha"] == 20.0 and hundred["peeraid"]["gamma2"] == 1.0
    # the issue-12 paper recipes: PeerAiD's 0-based milestones, Fair-MTARD's eta decaying with the lr, fp32
    peer = load_protocol("cifar10-linf-8-paper-peeraid").train
    assert (peer.epochs, peer.milestones, peer.precision, peer.swa_start) == (300, (214, 259, 284), "fp32", 214)
    assert load_protocol("cifar10-linf-8-paper-saad").eval.selections == ("last", "best-val", "swa")
    fair = {c.method: c.method_params for c in expand_cells(load_suite("cifar10-paper-fair-rslad"))}
    assert fair["fair-mtard"]["eta_decay_epochs"] == (215, 260, 285)
    [saad] = expand_cells(load_suite("cifar10-paper-saad"))[:1]
    assert saad.teacher == "cifar10/Linf/Gowal2021Improving_28_10_ddpm_100m"
    assert {c.teacher for c in expand_cells(load_suite("cifar10-paper-peeraid"))} == {"none"}


def test_passes_per_example_are_counted_from_the_methods_own_step():
    cell = lambda method: next(c for c in expand_cells(load_suite("digits-all-quick")) if c.method == method)  # noqa: E731
    # PGD-AT: 10 attack steps (forward + backward each), the training forward/backward on x', and the official
    # loop's two BatchNorm-only forwards (the restart-selection pass on x', S(x) after the optimizer step)
    assert training_passes(cell("pgd-at"), (1, 8, 8), 10) == {
        "student_forward": 13,
        "student_backward": 11,
        "teacher_forward": 0,
        "teacher_backward": 0,
    }
    # AdaAD: the teacher is in every attack step and gives T(x') for the loss; S(x) runs for its BatchNorm update
    assert training_passes(cell("adaad"), (1, 8, 8), 10) == {
        "student_forward": 12,
        "student_backward": 11,
        "teacher_forward": 11,
        "teacher_backward": 10,
    }


def test_forward_flops_by_hand():
    # cnn-tiny on 1x8x8: convs 1->8, 8->16 (8x8), pool, 16->32 (4x4), linear 32->10; 2 FLOPs per multiply-add
    by_hand = 2 * (64 * 8 * 9 * 1 + 64 * 16 * 9 * 8 + 16 * 32 * 9 * 16 + 32 * 10)
    assert forward_flops("cnn-tiny", (1, 8, 8), 10) == by_hand


def test_dry_run_prints_costs_and_missing_teachers(tmp_path, capsys):
    assert cli("run", "cifar10-standard", "--dry-run", "--model-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "132 cells under protocol cifar10-linf-8" in out and out.count("GPU-h]") == 132
    assert "rslad / resnet-18 / cifar10/Linf/Zhang2019Theoretically / seed 0" in out
    assert "estimated total: ~" in out
    assert f"{tmp_path / 'cifar10' / 'Linf' / 'Zhang2019Theoretically.pt'} is missing" in out
    assert f"{tmp_path / 'cifar10' / 'Linf' / 'Standard.pt'} is missing" in out


def test_shards_partition_the_cells(capsys):
    assert cli("run", "digits-all-quick", "--dry-run") == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    shards = []
    for i in (1, 2, 3):
        assert cli("run", "digits-all-quick", "--dry-run", "--shard", f"{i}/3") == 0
        shards.append([line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")])
    assert shards == [keys[0::3], keys[1::3], keys[2::3]]
    assert cli("run", "digits-all-quick", "--dry-run", "--shard", "4/3") == 2
    assert "--shard '4/3': expected I/N" in capsys.readouterr().err


def test_gpu_feature_flags():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    train = load_protocol("digits-linf").train
    assert gpu_features(train, cuda) == (False, False)  # protocols without the fields keep fp32 numerics
    auto = replace(train, precision="auto", channels_last="auto")
    assert gpu_features(auto, cuda) == (True, True) and gpu_features(auto, cpu) == (False, False)
    assert gpu_features(replace(train, precision="bf16", channels_last="on"), cpu) == (True, True)


class Spy(nn.Module):
    """A conv net that records, per forward, whether autocast was on and the input was channels_last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x):
        self.seen.append(
            (
                self.training,
                torch.is_autocast_enabled("cpu"),
                x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
            )
        )
        return self.head(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize(
    "flags, expected", [({}, (False, False)), ({"train.precision": "bf16", "train.channels_last": "on"}, (True, True))]
)
def test_bf16_and_channels_last_cover_training_only(tmp_path, flags, expected):
    protocol = load_protocol("digits-linf", {"train.epochs": 1, "train.val_pgd_steps": 1, **flags})
    generator = torch.Generator().manual_seed(0)
    pair = lambda n: (torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator))  # noqa: E731
    splits = Splits(train=pair(64), val=pair(16), test=pair(16), num_classes=10)  # 3 channels: NCHW != NHWC
    student = Spy()
    trainer = Trainer(
        TrainSetup(
            protocol=protocol,
            method=rkdbench.create("method", "pgd-at"),
            student=student,
            teachers={},
            splits=splits,
            seed=0,
            device=torch.device("cpu"),
            workdir=tmp_path,
        )
    )
    assert (trainer.bf16, trainer.channels_last) == expected
    trainer.fit()
    training = {(autocast, channels_last) for mode, autocast, channels_last in student.seen[:11]}
    assert training == {expected}  # the 10 attack steps and the training forward
    validation = {autocast for mode, autocast, _ in student.seen if not mode}
    assert validation == {False}  # validation PGD (and evaluation) stay fp32


def test_a_cifar10_cell_runs_end_to_end_on_fixture_files(tmp_path, monkeypatch, capsys):
    write_cifar10(tmp_path / "data", per_batch=220, n_test=40)  # 1,100 training images: 100 train + 1,000 val
    suite = tmp_path / "cifar-smoke.toml"
    suite.write_text(
        '[suite]\nname = "cifar-smoke"\nprotocol = "cifar10-linf-8"\nmethods = ["rslad"]\n'
        'students = ["cnn-tiny"]\nseeds = [0]\n'
    )
    results = tmp_path / "results"
    code = cli(
        "run",
        str(suite),
        "--results",
        str(results),
        "--data-dir",
        str(tmp_path / "data"),
        "--model-dir",
        str(tmp_path / "models"),
        "--set",
        "train.epochs=1",
        "--set",
        "train.val_pgd_steps=2",
        "--set",
        "eval.n_examples=16",
        "--set",
        "eval.chunk_size=0",
        "--set",
        'protocol.teacher="cifar10/Linf/AutoAttack-example-R18"',
        "--json",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)  # --json: nothing but the summary on stdout
    assert [c["status"] for c in summary["cells"]] == ["finished"] and summary["suite"] == "cifar-smoke"
    assert summary["cells"][0]["metrics"]["test.aa_acc"] <= summary["cells"][0]["metrics"]["test.clean_acc"]
    store = Tracker(results)  # its own URI: never MLflow's process-wide one, which defaults to ./mlflow.db
    runs = store.search_runs_frame("tags.`rkdbench.kind` = 'cell'")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["params.protocol.protocol.dataset"] == "cifar10"
    assert run["params.cell.teacher"] == "cifar10/Linf/AutoAttack-example-R18"
    assert run["tags.rkdbench.precision"] == "fp32" and run["tags.rkdbench.device"] == "cpu"
    assert run["metrics.test.n_examples"] == 16 and run["metrics.test.batch_size"] == 250  # chosen: CPU default
    for metric in ("test.clean_acc", "test.pgd20_acc", "test.cw_acc", "test.aa_acc", "spec.clean.mean_best"):
        assert 0.0 <= run[f"metrics.{metric}"] <= 1.0
    assert run["metrics.cost.teacher_forward"] == 1.0  # RSLAD: one T(x) per training example
    # the diagnostics every cell gets: worst-class accuracy and student-to-teacher transferability, per example too
    for metric in (
        "test.worst_class_aa_acc",
        "test.worst_class_clean_acc",
        "test.transferability.aa",
        "test.transferability.pgd20",
        "test.teacher_adv_acc.aa",
        "best_val.worst_class_aa_acc",
    ):
        assert 0.0 <= run[f"metrics.{metric}"] <= 1.0 or math.isnan(run[f"metrics.{metric}"]), metric
    assert run["metrics.test.worst_class_aa_acc"] <= run["metrics.test.aa_acc"]
    per_example = pd.read_parquet(store.download_artifact(run["run_id"], "per_example.parquet", tmp_path))
    assert {"y", "teacher_clean", "aa.student_pred", "aa.teacher_pred", "pgd20.teacher_pred"} <= set(per_example)
    per_class = pd.read_csv(store.download_artifact(run["run_id"], "per_class.csv", tmp_path))
    last = per_class[per_class.selection == "last"]
    assert last["n"].sum() == 16 and (last["aa_correct"] <= last["n"]).all()


def test_suite_status_counts_and_eta():
    cell = expand_cells(load_suite("digits-quick"))[0]
    outcomes = [CellOutcome(cell, "finished"), CellOutcome(cell, "skipped"), CellOutcome(cell, "failed")]
    line = suite_status(outcomes, 5, [120.0, 60.0])
    # two cells ran in 3 minutes: the 2 left take ~3 more
    assert line == "suite: 3/5 cells (1 finished, 1 skipped, 1 failed), 3m spent, ~3m to go for 2 more"
    assert suite_status(outcomes, 3, [10.0]).endswith("10s spent")
