"""`train.compile`: an optional protocol field that leaves every shipped protocol's hash unchanged, enters the
cell key when set, and trains to the same losses as eager mode (torch.compile on the CPU, gcc)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

import rkdbench
from rkdbench.config import builtin_names, canonical_hash, load_protocol
from rkdbench.data import Splits
from rkdbench.errors import ConfigError
from rkdbench.training.engine import Trainer, TrainSetup

# The hashes of the shipped protocols before `train.compile` existed. A protocol file changed on purpose
# changes its hash (and its cells): update the entry then, never to make a schema change pass.
SHIPPED_HASHES = {  # the CIFAR protocols changed on purpose when they moved from bf16 "auto" to fp32 (issue 12)
    "cifar10-linf-8": "e57d40497b510042",
    "cifar10-linf-8-paper-adaad": "c6364432624e0aa1",
    "cifar10-linf-8-paper-ard": "3fc79a1d458be1f0",
    "cifar10-linf-8-paper-iad": "8ce866b724e755b8",
    "cifar10-linf-8-paper-peeraid": "4bf88a952ac4d69f",
    "cifar10-linf-8-paper-rslad": "db1d365ea6a392f1",
    "cifar10-linf-8-paper-saad": "6469e2c7ae056f69",
    "cifar10-linf-8-short": "89c02c99043147f0",
    "cifar100-linf-8": "d3dfb41b60b090cb",
    "cifar100-linf-8-short": "cfff60bd48108e71",
    "digits-linf": "2146ed1f1d9c19f7",
}


@pytest.mark.parametrize("name", builtin_names("protocols"))
def test_shipped_protocol_hashes_are_unchanged(name):
    protocol = load_protocol(name)
    raw = tomllib.loads(Path(protocol.source).read_text())
    for unhashed in ("resources", "tune"):  # how cells are scheduled and searched, not what they compute
        raw.pop(unhashed, None)
    assert protocol.hash == canonical_hash(raw)  # nothing (no default) is added to a loaded protocol
    assert "compile" not in protocol.data["train"]
    if name in SHIPPED_HASHES:
        assert protocol.hash == SHIPPED_HASHES[name]


def test_compile_is_part_of_the_key_and_validated():
    plain = load_protocol("digits-linf")
    compiled = load_protocol("digits-linf", {"train.compile": True})
    assert compiled.hash != plain.hash
    with pytest.raises(ConfigError, match="train.compile = 'yes'.*allowed: bool"):
        load_protocol("digits-linf", {"train.compile": "yes"})


def _fit(compile_on: bool, workdir: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    splits = rkdbench.create("dataset", "digits").load(None, 0)
    (x, y), (xv, yv) = splits.train, splits.val
    tiny = Splits(train=(x[:32], y[:32]), val=(xv[:8], yv[:8]), test=(xv[:8], yv[:8]), num_classes=10)
    protocol = load_protocol(
        "digits-linf",
        {
            "train.epochs": 3,
            "train.batch_size": 32,
            "train.val_pgd_steps": 1,
            **({"train.compile": True} if compile_on else {}),
        },
    )
    torch.manual_seed(0)
    student = rkdbench.create("architecture", "cnn-small")
    trainer = Trainer(
        TrainSetup(protocol, rkdbench.create("method", "pgd-at"), student, {}, tiny, 0, torch.device("cpu"), workdir)
    )
    outcome = trainer.fit()
    assert "_compiled_call_impl" not in student.__dict__  # released: evaluation runs the eager module
    return [h["train.loss"] for h in outcome.history], student.state_dict()


@pytest.mark.slow  # torch.compile with gcc on the CPU: about a minute
def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    eager_losses, eager_weights = _fit(False, tmp_path / "eager")
    compiled_losses, compiled_weights = _fit(True, tmp_path / "compiled")
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-3, abs=1e-4)
    assert eager_losses[0] != eager_losses[-1]  # it trained: the comparison is between moving trajectories
    assert list(compiled_weights) == list(eager_weights)  # state-dict keys unchanged: checkpoints stay compatible
    for name, value in eager_weights.items():  # fused kernels sum in another order: float noise, not drift
        torch.testing.assert_close(compiled_weights[name], value, rtol=1e-3, atol=5e-4)
