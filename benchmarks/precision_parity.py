"""What bf16 training buys and costs: one short cell trained in fp32 and in bf16 autocast (`train.precision`) on the
same device, its training time per epoch and its clean / PGD-20 / AutoAttack accuracy.

The two precisions alternate (fp32, bf16, fp32, bf16, ...: `--pairs` pairs, each run from the same seed and the
same initial weights); the speed-up is the median of the pair ratios fp32 s/epoch / bf16 s/epoch, with min and max.
Every run's median epoch time counts (validation excluded; the engine's own `train.epoch_seconds`). The first pair's
two models are evaluated (fp32 throughout, as the protocols do) on the first `--eval-n` test points; the table gives
each precision's accuracies and their differences, bf16 - fp32, in points. One short cell is one training run:
differences of a point or two are within seed noise, so read them as a smoke test of numerics, not a verdict.

GPU (the default):  python benchmarks/precision_parity.py          CIFAR-10 (`cifar10-linf-8-short`, ResNet-18,
                    PGD-AT, 10,000 training points, 3 epochs, 500 test points) when the CIFAR-10 files are in
                    $RKDBENCH_DATA_DIR / --data-dir, else the bundled digits; ~5 minutes on an H200.
CPU smoke (tests):  python benchmarks/precision_parity.py --smoke   digits, cnn-small, toy sizes, 2 pairs.
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import rkdbench
from rkdbench.config import load_protocol
from rkdbench.data import Splits, load_splits
from rkdbench.errors import ConfigError
from rkdbench.evaluation.evaluate import evaluate, test_points
from rkdbench.training.engine import Trainer, TrainSetup

PRECISIONS = ("fp32", "bf16")


def _subset(splits: Splits, n_train: int, n_val: int) -> Splits:
    cut = lambda pair, n: (pair[0][:n], pair[1][:n])  # noqa: E731
    return Splits(cut(splits.train, n_train), cut(splits.val, n_val), splits.test, splits.num_classes)


def _setting(args: argparse.Namespace, device: torch.device):
    """(protocol name, student, splits on the device, what was used) for the run."""
    overrides = {
        "train.epochs": args.epochs,
        "train.val_pgd_steps": 1,
        "eval.n_examples": args.eval_n,
        "eval.chunk_size": 0,
        "eval.batch_size": args.eval_batch,
        "eval.attacks": {
            "pgd20": {"attack": "pgd", "steps": 20, "step_size": 0.25, "init": "uniform", "loss": "ce"},
            "aa": {"attack": "autoattack", "version": "standard"},
        },
    }
    candidates = (
        [("digits-linf", "cnn-small")]
        if args.smoke
        else [("cifar10-linf-8-short", "resnet-18"), ("digits-linf", "cnn-small")]
    )
    for name, student in candidates:
        protocol = load_protocol(name, overrides)
        try:
            splits = load_splits(protocol, args.data_dir)
        except ConfigError as exc:  # no CIFAR-10 files here: say so and fall back on the bundled digits
            print(f"note: {name} unavailable ({exc}); using digits-linf", file=sys.stderr)
            continue
        return protocol, student, _subset(splits, args.train_n, args.val_n).to(device)
    raise SystemExit("no dataset available")


def _train(
    protocol_name: str,
    overrides: dict,
    student_name: str,
    initial: dict,
    splits: Splits,
    method: str,
    device: torch.device,
    seed: int,
) -> tuple[torch.nn.Module, float]:
    protocol = load_protocol(protocol_name, overrides)
    student = rkdbench.create(
        "architecture", student_name, num_classes=splits.num_classes, in_channels=splits.input_shape[0]
    ).to(device)
    student.load_state_dict(initial)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(
            TrainSetup(
                protocol=protocol,
                method=rkdbench.create("method", method),
                student=student,
                teachers={},
                splits=splits,
                seed=seed,
                device=device,
                workdir=Path(workdir),
            )
        )
        outcome = trainer.fit()
    return student, statistics.median(h["train.epoch_seconds"] for h in outcome.history)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, digits, toy sizes (what the test runs)")
    parser.add_argument("--method", default="pgd-at", help="a teacher-free method (default pgd-at)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--train-n", type=int, default=None)
    parser.add_argument("--val-n", type=int, default=None)
    parser.add_argument("--eval-n", type=int, default=None)
    parser.add_argument("--eval-batch", type=int, default=0, help="0 = chosen from free memory (CPU: 250)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = (
        {"epochs": 1, "train_n": 128, "val_n": 32, "eval_n": 24}
        if args.smoke
        else {"epochs": 3, "train_n": 10_000, "val_n": 200, "eval_n": 500}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("error: no CUDA device; the real comparison needs one (use --smoke for the CPU toy run)", file=sys.stderr)
        return 2
    protocol, student_name, splits = _setting(args, device)
    torch.manual_seed(args.seed)
    initial = rkdbench.create(
        "architecture", student_name, num_classes=splits.num_classes, in_channels=splits.input_shape[0]
    ).state_dict()
    overrides = dict(protocol.overrides)
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    models: dict[str, torch.nn.Module] = {}
    for _ in range(args.pairs):
        for precision in PRECISIONS:  # A B A B ...
            model, per_epoch = _train(
                protocol.name,
                {**overrides, "train.precision": precision},
                student_name,
                copy.deepcopy(initial),
                splits,
                args.method,
                device,
                args.seed,
            )
            seconds[precision].append(per_epoch)
            models.setdefault(precision, model)
    accuracy: dict[str, dict[str, float]] = {}
    x, y = test_points(protocol, splits.test)
    for precision, model in models.items():
        metrics = evaluate(model, protocol, x, y).metrics
        accuracy[precision] = {k: 100 * metrics[f"{k}_acc"] for k in ("clean", "pgd20", "aa")}
    ratios = [a / b for a, b in zip(seconds["fp32"], seconds["bf16"])]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"precision parity: {args.method} / {student_name} / {protocol.name} ({splits.train[1].numel()} training "
        f"points, {args.epochs} epoch(s), {len(y)} test points), {device.type} ({name}), {args.pairs} alternated "
        f"pairs, seed {args.seed}, torch {torch.__version__}, cudnn TF32 {torch.backends.cudnn.allow_tf32}, "
        f"matmul TF32 {torch.backends.cuda.matmul.allow_tf32}"
    )
    print()
    print("| precision | train s/epoch (median of runs) | clean | PGD-20 | AutoAttack |")
    print("| --- | --- | --- | --- | --- |")
    for precision in PRECISIONS:
        a = accuracy[precision]
        print(
            f"| {precision} | {statistics.median(seconds[precision]):.3f} | {a['clean']:.1f} | {a['pgd20']:.1f} "
            f"| {a['aa']:.1f} |"
        )
    d = {k: accuracy["bf16"][k] - accuracy["fp32"][k] for k in ("clean", "pgd20", "aa")}
    print(
        f"| bf16 - fp32 | speed-up x{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}) "
        f"| {d['clean']:+.1f} | {d['pgd20']:+.1f} | {d['aa']:+.1f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
