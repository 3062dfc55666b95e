"""`train.compile`: an optional protocol field that leaves every shipped protocol's hash unchanged, enters the
cell key when set, and trains as eager mode does, up to rounding (torch.compile on the CPU, gcc)."""

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


def _fit(
    compile_on: bool, workdir: Path, method: str, nudge: int | None = None
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Three epochs of `method` on 32 digits (one step each); `nudge`: the initial weights moved by about one
    float32 ulp (relative 2^-23, seeded), the size of the rounding a reordered sum makes."""
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
    if nudge is not None:
        noise = torch.Generator().manual_seed(nudge)
        with torch.no_grad():
            for parameter in student.parameters():
                parameter.mul_(1 + 2**-23 * torch.randn(parameter.shape, generator=noise))
    trainer = Trainer(
        TrainSetup(protocol, rkdbench.create("method", method), student, {}, tiny, 0, torch.device("cpu"), workdir)
    )
    outcome = trainer.fit()
    assert "_compiled_call_impl" not in student.__dict__  # released: evaluation runs the eager modules
    return [h["train.loss"] for h in outcome.history], student.state_dict()


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Relative distance between two students' weights (every float tensor, as one vector)."""
    names = [name for name, value in a.items() if value.is_floating_point()]
    flat_a, flat_b = (torch.cat([weights[name].flatten() for name in names]) for weights in (a, b))
    return ((flat_a - flat_b).norm() / flat_a.norm()).item()


@pytest.mark.slow  # torch.compile with gcc on the CPU: about a minute
def test_compiled_training_follows_the_eager_trajectory(tmp_path):
    """Compiled kernels sum in another order than eager ones (and differently per instruction set), so compiled
    and eager weights differ by rounding, which training may amplify; what is compared is what does not depend
    on that. Smooth training (`standard`, no attack) does not amplify rounding: the eager run's own spread, its
    weights after a one-ulp nudge of the initial weights (measured about 1.3e-7 relative), sets the scale, and
    compiled weights stay within 100 times it (compiled measured 2e-8 here; a wrong gradient or a lost update
    moves them by 1e-3 and more). Adversarial training amplifies it: PGD's sign steps flip, and a one-ulp nudge
    moved eager PGD-AT weights by 4e-3 (0.1 % relative) in 2 of 6 seeds, the per-epoch loss by up to 1.1e-3.
    There the losses must follow the eager trajectory within a tenth of how far it moves in three epochs
    (about 1e-2: nine times that chaos; a compiled loop that did not train moves 0)."""
    from torch._dynamo.utils import counters

    eager_losses, eager_weights = _fit(False, tmp_path / "eager", "standard")
    _, nudged_weights = _fit(False, tmp_path / "nudged", "standard", nudge=1)
    counters.clear()
    compiled_losses, compiled_weights = _fit(True, tmp_path / "compiled", "standard")
    assert counters["stats"]["unique_graphs"] > 0  # the student was compiled, not left eager
    assert list(compiled_weights) == list(eager_weights)  # state-dict keys unchanged: checkpoints stay compatible
    spread = _distance(eager_weights, nudged_weights)
    assert 0 < spread < 1e-5  # the nudge reached the weights, and smooth training did not amplify it
    assert _distance(eager_weights, compiled_weights) <= 100 * spread
    assert compiled_losses == pytest.approx(eager_losses, rel=100 * spread)

    eager_losses, _ = _fit(False, tmp_path / "eager-pgd", "pgd-at")
    compiled_losses, _ = _fit(True, tmp_path / "compiled-pgd", "pgd-at")
    moved = abs(eager_losses[0] - eager_losses[-1])
    assert moved > 0.05  # it trained: the comparison is between moving trajectories
    assert compiled_losses == pytest.approx(eager_losses, abs=moved / 10)
