"""Wall time of our `autoattack` plugin against a direct `pyautoattack.AutoAttack.run_standard_evaluation`
call on the same model, points, seed and batch size (goal: ratio <= 1.05), plus, for each single-attack plugin,
points per second and forward / backward passes per point (counted by a wrapper around the model), so it shows
where AutoAttack's time goes (Square and FAB-T at high robust accuracy).

Run:  python benchmarks/autoattack_overhead.py [--teacher-dir M] [--n 100] [--pairs 3] [--threads 1]
With --teacher-dir (a model dir holding the built digits teacher) it attacks that robust CNN; otherwise a
cnn-small trained here for a few epochs of PGD-AT. The plugin and the direct call run interleaved (one untimed
warm-up each, then `--pairs` pairs, alternating which goes first): the median of the per-pair ratios with min and
max, for wall and process CPU time, and the machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import rkdbench
from rkdbench.attacks.base import preserved_rng
from rkdbench.cost.benchmarking import interleave, machine_line


def robust_model(teacher_dir: str | None):
    if teacher_dir:
        from rkdbench.teachers.load import load_teacher

        return load_teacher(rkdbench.create("teacher", "digits/Linf/rkdbench-cnn-large"), teacher_dir)
    import tempfile
    from pathlib import Path

    from rkdbench.config import load_protocol
    from rkdbench.training.engine import Trainer, TrainSetup

    torch.manual_seed(0)
    protocol = load_protocol("digits-linf", {"train.epochs": 5})
    splits = rkdbench.create("dataset", "digits").load(None, 0)
    student = rkdbench.create("architecture", "cnn-small")
    with tempfile.TemporaryDirectory() as workdir:
        Trainer(
            TrainSetup(
                protocol,
                rkdbench.create("method", "pgd-at"),
                student,
                {},
                splits,
                0,
                torch.device("cpu"),
                Path(workdir),
            )
        ).fit()
    return student.eval()


class _CountBackward(torch.autograd.Function):
    """Identity on the input whose backward counts the examples a gradient reached."""

    @staticmethod
    def forward(ctx, x, counts):
        ctx.counts = counts
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.counts["backward"] += grad.shape[0]
        return grad, None


class PassCounter(nn.Module):
    """The model, counting forward passes (examples) and backward passes that reach the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.counts = {"forward": 0, "backward": 0}

    def forward(self, x):
        self.counts["forward"] += x.shape[0]
        return self.model(_CountBackward.apply(x, self.counts) if x.requires_grad else x)


def rng_kept(fn):
    """`fn` with torch's global RNG restored afterwards (pyautoattack reseeds it)."""

    def run():
        with preserved_rng():
            return fn()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-dir", default=None)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eps", type=float, default=0.15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pyautoattack import AutoAttack

    model = robust_model(args.teacher_dir)
    splits = rkdbench.create("dataset", "digits").load(None, 0)
    x, y = splits.test[0][: args.n], splits.test[1][: args.n]
    batch = 500
    plugin = rkdbench.create("attack", "autoattack", norm="Linf", eps=args.eps, seed=0, batch_size=batch)
    results = []
    comparison = interleave(
        rng_kept(lambda: results.append(plugin.run(model, x, y))),
        rng_kept(
            lambda: AutoAttack(
                model, norm="Linf", eps=args.eps, seed=0, version="standard", device="cpu"
            ).run_standard_evaluation(x, y, batch_size=batch)
        ),
        pairs=args.pairs,
        names=("autoattack plugin", "direct pyautoattack"),
    )
    print(machine_line())
    print(f"{args.n} digits test points, eps {args.eps}; robust accuracy {results[-1].robust_accuracy:.1%}")
    print(comparison.report())
    print(f"{'attack':<10}{'seconds':>9}{'points/s':>10}{'fwd/point':>11}{'bwd/point':>11}{'robust':>8}")
    for name in ("apgd-ce", "apgd-t", "fab-t", "square"):
        attack = rkdbench.create("attack", name, norm="Linf", eps=args.eps, seed=0, batch_size=batch)
        counted = PassCounter(model).eval()
        started = time.perf_counter()
        res = rng_kept(lambda attack=attack, counted=counted: attack.run(counted, x, y))()
        seconds = time.perf_counter() - started
        print(
            f"{name:<10}{seconds:>9.1f}{args.n / seconds:>10.1f}{counted.counts['forward'] / args.n:>11.0f}"
            f"{counted.counts['backward'] / args.n:>11.0f}{res.robust_accuracy:>8.1%}"
        )


if __name__ == "__main__":
    main()
