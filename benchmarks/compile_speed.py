"""`train.compile` on against off: engine epochs on digits, interleaved.

Run:  python benchmarks/compile_speed.py [--method pgd-at] [--rounds 5] [--threads 1]
Each side is one epoch of the engine's fit() (the same networks across calls, a two-point validation split); the
compiled side's first epoch, which pays the compilation, is the untimed warm-up round. Prints the median of the
per-round ratios compiled / eager with min and max (wall and process CPU time), and the machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import rkdbench
from rkdbench.config import load_protocol
from rkdbench.cost.benchmarking import interleave, machine_line
from rkdbench.data import Splits
from rkdbench.training.engine import Trainer, TrainSetup


def epoch_runner(method_name: str, compiled: bool, splits) -> Callable[[], None]:
    protocol = load_protocol(
        "digits-linf", {"train.epochs": 1, "train.val_pgd_steps": 1, **({"train.compile": True} if compiled else {})}
    )
    torch.manual_seed(0)
    method = rkdbench.create("method", method_name)
    teachers = {role: rkdbench.create("architecture", "cnn-large").eval() for role in method.teacher_roles}
    student = rkdbench.create("architecture", "cnn-small")

    def epoch() -> None:
        with tempfile.TemporaryDirectory() as workdir:
            Trainer(
                TrainSetup(protocol, method, student, teachers, splits, 0, torch.device("cpu"), Path(workdir))
            ).fit()

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="pgd-at")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = rkdbench.create("dataset", "digits").load(None, 0)
    splits = Splits(full.train, (full.val[0][:2], full.val[1][:2]), full.test, full.num_classes)
    started = time.perf_counter()
    comparison = interleave(
        epoch_runner(args.method, True, splits),
        epoch_runner(args.method, False, splits),
        pairs=args.rounds,
        names=("compiled", "eager"),
    )
    print(machine_line())
    print(
        f"digits, {args.method}, cnn-small student, one engine epoch per side per round "
        f"({time.perf_counter() - started:.0f}s in all, compilation in the warm-up round)"
    )
    print(comparison.report())


if __name__ == "__main__":
    main()
