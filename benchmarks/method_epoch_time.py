"""Per-epoch training time of every method on digits, relative to `pgd-at`, and the engine against a plain
PyTorch loop doing PGD-AT's exact maths (the engine must not be slower than the loop it replaces).

Run:  python benchmarks/method_epoch_time.py [--epochs 3] [--methods pgd-at,ard,...]
Prints one row per method: median seconds per training epoch (validation excluded), ratio to pgd-at, and the
forward/backward passes per training example per epoch from the engine's counters.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import rkdbench
from rkdbench.config import load_protocol
from rkdbench.engine import Trainer, TrainSetup
from rkdbench.pgd import pgd


def engine_epochs(method_name: str, epochs: int, protocol, splits) -> tuple[list[float], dict[str, float]]:
    torch.manual_seed(0)
    method = rkdbench.create("method", method_name, **({"begin_fraction": 0.0} if method_name.startswith("iad") else {}))
    teachers = {role: rkdbench.create("architecture", "cnn-large").eval() for role in method.teacher_roles}
    student = rkdbench.create("architecture", "cnn-small")
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(TrainSetup(protocol, method, student, teachers, splits, 0, torch.device("cpu"), Path(workdir)))
        outcome = trainer.fit()
    return [h["train.epoch_seconds"] for h in outcome.history], outcome.cost


def plain_pgd_at_epochs(epochs: int, protocol, splits) -> list[float]:
    """The same maths as the `pgd-at` plugin, written as the usual hand loop."""
    torch.manual_seed(0)
    model = rkdbench.create("architecture", "cnn-small")
    train = protocol.section("train")
    opt = torch.optim.SGD(model.parameters(), lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"])
    eps = protocol.section("threat")["eps"]
    x_all, y_all = splits.train
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(y_all), generator=generator)
        for i in range(0, len(order), train["batch_size"]):
            idx = order[i:i + train["batch_size"]]
            x, y = x_all[idx], y_all[idx]
            model.train()
            x_adv = pgd(lambda xa: F.cross_entropy(model(xa), y, reduction="none"), x, eps=eps, step_size=eps / 4, steps=10)
            loss = F.cross_entropy(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        float(loss.detach())  # one sync per epoch, as the engine does
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(rkdbench.list_components("method")))
    args = parser.parse_args()
    torch.set_num_threads(2)
    protocol = load_protocol("digits-linf", {"train.epochs": args.epochs, "train.val_pgd_steps": 1})
    splits = rkdbench.create("dataset", "digits").load(None, 0)
    methods = args.methods.split(",")
    results = {m: engine_epochs(m, args.epochs, protocol, splits) for m in methods}
    base = statistics.median(results["pgd-at"][0]) if "pgd-at" in results else None
    print(f"digits, cnn-small student, cnn-large teacher(s), {args.epochs} epochs, {torch.get_num_threads()} threads, CPU")
    print(f"{'method':<13}{'s/epoch':>9}{'x pgd-at':>10}{'S fwd':>8}{'S bwd':>8}{'T fwd':>8}{'T bwd':>8}")
    for name, (times, cost) in results.items():
        median = statistics.median(times)
        ratio = f"{median / base:.2f}" if base else "-"
        print(f"{name:<13}{median:>9.2f}{ratio:>10}{cost['cost.student_forward']:>8.1f}{cost['cost.student_backward']:>8.1f}"
              f"{cost['cost.teacher_forward']:>8.1f}{cost['cost.teacher_backward']:>8.1f}")
    if base:
        plain = statistics.median(plain_pgd_at_epochs(args.epochs, protocol, splits))
        print(f"plain PyTorch PGD-AT loop: {plain:.2f} s/epoch; engine / plain = {base / plain:.2f}")


if __name__ == "__main__":
    main()
