"""Per-epoch training time of every method on digits relative to `pgd-at`, and the engine against a plain PyTorch
loop doing PGD-AT's exact maths (the engine must not be slower than the loop it replaces), measured interleaved.

Run:  python benchmarks/method_epoch_time.py [--rounds 5] [--methods pgd-at,ard,...] [--threads 1]
Every method's epoch runs once per round (the order reversed every other round, one untimed warm-up round), so
a busy machine slows all of them alike; each method's ratio to pgd-at is the median of the per-round ratios, with
min and max, for wall and process CPU time. One epoch = the engine's fit() for one epoch with a two-point
validation split (validation is negligible), or one pass of the plain loop. Also prints the forward/backward
passes per training example per epoch from the engine's counters, and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import rkdbench
from rkdbench.attacks.pgd import pgd
from rkdbench.config import load_protocol
from rkdbench.cost.benchmarking import interleave_many, machine_line, ratio_summary
from rkdbench.data import Splits
from rkdbench.training.engine import Trainer, TrainSetup


def engine_epoch(method_name: str, protocol, splits) -> tuple[Callable[[], object], dict[str, float]]:
    """A callable running one engine epoch of the method (networks kept across calls), and its pass counts."""
    torch.manual_seed(0)
    method = rkdbench.create(
        "method", method_name, **({"begin_fraction": 0.0} if method_name.startswith("iad") else {})
    )
    teachers = {role: rkdbench.create("architecture", "cnn-large").eval() for role in method.teacher_roles}
    student = rkdbench.create("architecture", "cnn-small")
    cost: dict[str, float] = {}

    def epoch() -> None:
        with tempfile.TemporaryDirectory() as workdir:
            outcome = Trainer(
                TrainSetup(protocol, method, student, teachers, splits, 0, torch.device("cpu"), Path(workdir))
            ).fit()
        cost.update(outcome.cost)

    return epoch, cost


def plain_pgd_at_epoch(protocol, splits) -> Callable[[], object]:
    """The same maths as the `pgd-at` plugin, written as the usual hand loop: one epoch per call."""
    torch.manual_seed(0)
    model = rkdbench.create("architecture", "cnn-small")
    train = protocol.train
    opt = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    eps = protocol.threat.eps
    x_all, y_all = splits.train
    generator = torch.Generator().manual_seed(0)

    def epoch() -> None:
        order = torch.randperm(len(y_all), generator=generator)
        for i in range(0, len(order), train.batch_size):
            idx = order[i : i + train.batch_size]
            x, y = x_all[idx], y_all[idx]
            model.train()
            x_adv = pgd(
                lambda xa, y=y: F.cross_entropy(model(xa), y, reduction="none"), x, eps=eps, step_size=eps / 4, steps=10
            )
            loss = F.cross_entropy(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        float(loss.detach())  # one sync per epoch, as the engine does

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", default=",".join(rkdbench.list_components("method")))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protocol = load_protocol("digits-linf", {"train.epochs": 1, "train.val_pgd_steps": 1})
    full = rkdbench.create("dataset", "digits").load(None, 0)
    splits = Splits(full.train, (full.val[0][:2], full.val[1][:2]), full.test, full.num_classes)
    methods = args.methods.split(",")
    if "pgd-at" not in methods:
        methods.insert(0, "pgd-at")
    runs, costs = {}, {}
    for name in methods:
        runs[name], costs[name] = engine_epoch(name, protocol, splits)
    runs["plain loop"] = plain_pgd_at_epoch(protocol, splits)
    started = time.perf_counter()
    timings = interleave_many(runs, rounds=args.rounds)
    print(machine_line())
    print(
        f"digits, cnn-small student, cnn-large teacher(s), one epoch per method per round, {args.rounds} interleaved "
        f"rounds after one warm-up round ({time.perf_counter() - started:.0f}s)"
    )
    print(
        f"{'method':<13}{'s/epoch':>9}{'CPU s':>8}  {'wall x pgd-at (min, max)':<31}{'CPU x pgd-at':<14}"
        f"{'S fwd':>7}{'S bwd':>7}{'T fwd':>7}{'T bwd':>7}"
    )
    for name in methods:
        wall = ratio_summary([t.wall for t in timings[name]], [t.wall for t in timings["pgd-at"]])
        cpu = ratio_summary([t.cpu for t in timings[name]], [t.cpu for t in timings["pgd-at"]])
        c = costs[name]
        print(
            f"{name:<13}{statistics.median(t.wall for t in timings[name]):>9.2f}"
            f"{statistics.median(t.cpu for t in timings[name]):>8.2f}  {str(wall):<31}{cpu.median:<14.3f}"
            f"{c['cost.student_forward']:>7.1f}{c['cost.student_backward']:>7.1f}{c['cost.teacher_forward']:>7.1f}"
            f"{c['cost.teacher_backward']:>7.1f}"
        )
    wall = ratio_summary([t.wall for t in timings["pgd-at"]], [t.wall for t in timings["plain loop"]])
    cpu = ratio_summary([t.cpu for t in timings["pgd-at"]], [t.cpu for t in timings["plain loop"]])
    print(f"engine pgd-at / plain PyTorch loop: wall {wall}, CPU {cpu}")


if __name__ == "__main__":
    main()
