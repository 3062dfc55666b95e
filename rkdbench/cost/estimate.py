"""What a suite will cost before it runs: forward/backward passes per training example, FLOPs, GPU-hours.

Passes are counted, not guessed: one training step of the cell's method runs on two random examples of the
dataset's shape through stand-in linear networks, with the engine's own pass counter, so attack steps,
teacher passes and custom training steps are all included exactly as in training. FLOPs per pass come from
`torch.utils.flop_counter` on the real architectures built on the meta device (no memory, no weights), a
backward pass counted as two forwards. GPU-hours divide by an assumed sustained throughput (`--gpu-tflops`,
default 40 TFLOP/s: an H100 training small CNNs at batch 128 in bf16 sustains a few percent of its peak);
it is an order of magnitude, said as such. Evaluation prices each attack at the passes per point it declares
(`passes_per_point`: AutoAttack's depend on the expected fraction of points that stay robust).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..attacks.traits import option_values, plugins_of
from ..config import Cell
from ..contracts.method import Progress
from ..data import Splits

__all__ = ["CellCost", "estimate_cell", "forward_flops", "training_passes", "DEFAULT_GPU_TFLOPS"]

DEFAULT_GPU_TFLOPS = 40.0


@dataclass(frozen=True)
class CellCost:
    """The estimate for one cell: passes per training example, total FLOPs and GPU-hours."""

    student_forward: float
    student_backward: float
    teacher_forward: float
    teacher_backward: float
    train_tflop: float
    eval_tflop: float
    gpu_hours: float
    network_forward: float = 0.0  # the method's own networks (PeerAiD's peer), costed at the student's FLOPs
    network_backward: float = 0.0


@functools.cache
def forward_flops(architecture: str, input_shape: tuple[int, ...], num_classes: int, arch_kwargs: tuple = ()) -> int:
    """FLOPs of one forward pass of one example (multiply-adds counted as 2), measured on the meta device."""
    from ..plugins import create

    with torch.device("meta"):
        model = create(
            "architecture", architecture, num_classes=num_classes, in_channels=input_shape[0], **dict(arch_kwargs)
        ).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty(1, *input_shape))
    return int(counter.get_total_flops())


def _stand_in(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))


def training_passes(cell: Cell, input_shape: tuple[int, ...], num_classes: int) -> dict[str, float]:
    """Forward/backward passes per training example of the cell's method, counted by the engine on one
    late-epoch step (after any warm-up gate) with stand-in networks."""
    from ..contracts.build import fresh_method
    from ..training.build import build_trainer

    method = fresh_method(cell)  # a copy of the cell's method object: one training step changes its state
    n = 2
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, *input_shape, generator=generator)
    y = torch.arange(n) % num_classes
    splits = Splits(train=(x, y), val=(x, y), test=(x, y), num_classes=num_classes)
    teachers = {role: _stand_in(input_shape, num_classes) for role in method.teacher_roles}
    epochs = cell.protocol.train.epochs
    with tempfile.TemporaryDirectory() as workdir, torch.random.fork_rng():
        trainer = build_trainer(
            cell.protocol,
            method,
            _stand_in(input_shape, num_classes),
            splits,
            device=torch.device("cpu"),
            workdir=Path(workdir),
            teachers=teachers,
        )
        trainer.training_step(x, y, Progress(epochs - 1, epochs, 0, 1))
        trainer.after_step()
    return {k: v / n for k, v in trainer.pass_counts().items()}


def _eval_passes(cell: Cell, n_test: int, robust_fraction: float) -> tuple[float, float]:
    """Student forwards/backwards of the protocol's evaluation, for every selection."""
    evaluation = cell.protocol.eval
    n = evaluation.n_examples or n_test
    forwards, backwards = float(n), 0.0  # the clean pass
    plugins = plugins_of(evaluation.attacks)
    for entry in evaluation.attacks.values():
        plugin = plugins[entry.attack]
        passes = plugin.passes_per_point(option_values(plugin, entry.options), robust_fraction)
        if passes is not None:  # an attack that declares no cost is priced at zero
            forwards, backwards = forwards + n * passes[0], backwards + n * passes[1]
    selections = len(evaluation.selections)
    return forwards * selections, backwards * selections


def estimate_cell(
    cell: Cell,
    teacher_arch: dict[str, tuple[str, tuple]],
    input_shape: tuple[int, ...],
    num_classes: int,
    split_sizes: tuple[int, int, int],
    gpu_tflops: float = DEFAULT_GPU_TFLOPS,
    robust_fraction: float = 0.5,
) -> CellCost:
    """The cell's cost: training (its method's passes x epochs x train size, plus per-epoch validation PGD)
    and evaluation. `teacher_arch` maps the cell's teacher ids to (architecture, arch_kwargs items)."""
    passes = training_passes(cell, input_shape, num_classes)
    n_train, n_val, n_test = split_sizes
    train = cell.protocol.train
    epochs = train.epochs
    student = forward_flops(cell.student, input_shape, num_classes)
    teacher_ids = [t for t in [cell.teacher, *cell.extra_teachers.values()] if t in teacher_arch]
    teacher = max(
        (
            forward_flops(arch, input_shape, num_classes, kwargs)
            for arch, kwargs in (teacher_arch[t] for t in teacher_ids)
        ),
        default=0,
    )
    per_example = (
        (passes["student_forward"] + 2 * passes["student_backward"]) * student
        + (passes["teacher_forward"] + 2 * passes["teacher_backward"]) * teacher
        + (passes.get("network_forward", 0) + 2 * passes.get("network_backward", 0)) * student
    )
    val_steps = train.val_pgd_steps
    per_epoch_val = n_val * (val_steps + 2 + 2 * val_steps) * student
    train_flops = epochs * (n_train * per_example + per_epoch_val)
    eval_forwards, eval_backwards = _eval_passes(cell, n_test, robust_fraction)
    eval_flops = (eval_forwards + 2 * eval_backwards) * student
    return CellCost(
        **passes,
        train_tflop=train_flops / 1e12,
        eval_tflop=eval_flops / 1e12,
        gpu_hours=(train_flops + eval_flops) / (gpu_tflops * 1e12) / 3600,
    )
