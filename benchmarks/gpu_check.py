"""One-call GPU check: training throughput, the official-style loop, AutoAttack throughput and the evaluation batch
size.

Run:  python benchmarks/gpu_check.py [--budget 480] [--steps 30] [--aa-points 256]     (one GPU, at most ~8 minutes)
      python benchmarks/gpu_check.py --smoke      (every path at toy size on the CPU: toy networks, a few points)
Prints one table, a row per measurement (each row also printed as soon as it is done, so a run cut short still
says what it measured); a row that fails prints its error and the others go on; a row that would not fit the time
budget says so. Rows:
  (a) an RSLAD training slice through the engine (ResNet-18 student, WRN-34-10 teacher with random weights,
      batch 128, synthetic CIFAR-shaped data on the GPU) in fp32, bf16, bf16 + channels_last and bf16 +
      channels_last + `train.compile`: samples/s over one timed epoch of `--steps` steps after a warm-up epoch
      (which pays cuDNN autotuning and compilation), and achieved TFLOP/s (FLOPs counted by `rkdbench.cost.estimate`)
      against the device's peak (a small table of dense peaks by GPU name; fp32 convolutions run as TF32, PyTorch's
      cuDNN default, so fp32 is compared with the TF32 peak);
  (b) the same slice as an official repository writes it (torchvision CIFAR transforms on PIL images from an
      in-memory uint8 array, a DataLoader with workers, fp32, a `.item()` per step): samples/s and engine fp32 / it;
  (c) AutoAttack `standard` points/s through our plugin and through pyautoattack directly, on the CIFAR-10
      ResNet-18 that pyautoattack's wheel ships (`AutoAttack-example-R18`), `--aa-points` synthetic smooth images
      labelled with the model's own predictions (no dataset on the machine; the robust fraction is printed, since
      AutoAttack's time depends on it);
  (d) the evaluation batch size the harness picks from free memory for the student and the teacher.
Timings synchronize the device around them; warm-up is excluded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import rkdbench
from rkdbench.config import Cell, Protocol, load_protocol
from rkdbench.cost.benchmarking import machine_line
from rkdbench.cost.estimate import forward_flops, training_passes
from rkdbench.data import Splits
from rkdbench.training.engine import Trainer, TrainSetup

# Dense tensor-core peaks in TFLOP/s (bf16, tf32) from the vendors' datasheets; first match on the device name wins.
PEAKS = [
    ("H200", 989.4, 494.7),
    ("H100 PCIe", 756.0, 378.0),
    ("H100 NVL", 835.0, 417.5),
    ("H100", 989.4, 494.7),
    ("A100", 312.0, 156.0),
    ("L40S", 362.1, 183.2),
    ("L4", 121.0, 60.0),
    ("A10", 125.0, 62.5),
]
EPS = 8 / 255


@dataclass(frozen=True)
class Size:
    student: str
    teacher: str
    teacher_kwargs: dict
    batch: int
    steps: int
    aa_points: int
    aa_model: str  # "bundled" for pyautoattack's ResNet-18, "toy" for a random linear model
    workers: int


def peak(device_name: str, bf16: bool) -> float | None:
    for key, bf16_peak, tf32_peak in PEAKS:
        if key in device_name:
            return bf16_peak if bf16 else tf32_peak
    return None


class Table:
    """Rows printed as they come and again, aligned, at the end."""

    columns = ("row", "samples|points/s", "TFLOP/s", "% of peak", "note")

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, *cells: str) -> None:
        row = tuple(cells) + ("",) * (len(self.columns) - len(cells))
        self.rows.append(row)
        print("row: " + " | ".join(row), flush=True)

    def render(self) -> str:
        widths = [max(len(r[i]) for r in [self.columns, *self.rows]) for i in range(len(self.columns))]
        line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
        return "\n".join(
            [line(self.columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, self.rows)]
        )


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    @property
    def left(self) -> float:
        return self.deadline - time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def guarded(table: Table, name: str, budget: Budget, needs: float, fn: Callable[[], None]) -> None:
    """Run one row: skipped when less than `needs` seconds are left, its error printed in the row if it fails."""
    if budget.left < needs:
        table.add(name, "", "", "", f"skipped: {budget.left:.0f}s of the time budget left, needs ~{needs:.0f}s")
        return
    try:
        fn()
    except Exception as exc:  # one broken row must not cost the others
        traceback.print_exc(file=sys.stderr)
        table.add(
            name, "", "", "", f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        )
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ---- (a) the engine's slice ------------------------------------------------------------------------------------
def slice_protocol(size: Size, device: torch.device, **train: object) -> Protocol:
    return load_protocol(
        "cifar10-linf-8",
        {
            "train.epochs": 2,
            "train.batch_size": size.batch,
            "train.val_pgd_steps": 1,
            "train.schedule": "constant",
            "train.device": device.type,
            **{f"train.{k}": v for k, v in train.items()},
        },
    )


def flops_per_example(size: Size, protocol: Protocol) -> float:
    """FLOPs of one RSLAD training example (attack steps, teacher pass, backward = 2 forwards), as --dry-run counts."""
    cell = Cell(
        protocol=protocol,
        method="rslad",
        method_params={},
        method_version="",
        student=size.student,
        teacher="cifar10/Linf/Zhang2019Theoretically",
        seed=0,
    )
    passes = training_passes(cell, (3, 32, 32), 10)
    student = forward_flops(size.student, (3, 32, 32), 10)
    teacher = forward_flops(size.teacher, (3, 32, 32), 10, tuple(sorted(size.teacher_kwargs.items())))
    return (passes["student_forward"] + 2 * passes["student_backward"]) * student + (
        passes["teacher_forward"] + 2 * passes["teacher_backward"]
    ) * teacher


def networks(size: Size, device: torch.device) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = rkdbench.create("architecture", size.student, num_classes=10, in_channels=3).to(device)
    teacher = (
        rkdbench.create("architecture", size.teacher, num_classes=10, in_channels=3, **size.teacher_kwargs)
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    return student, teacher


def engine_samples_per_second(size: Size, device: torch.device, protocol: Protocol) -> float:
    """Samples/s of the second of two engine epochs (the first is warm-up: autotuning, compilation)."""
    generator = torch.Generator().manual_seed(0)
    n = size.steps * size.batch
    x = torch.rand(n, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, 10, (n,), generator=generator).to(device)
    val = (x[:16], y[:16])
    student, teacher = networks(size, device)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(
            TrainSetup(
                protocol=protocol,
                method=rkdbench.create("method", "rslad"),
                student=student,
                teachers={"robust": teacher},
                splits=Splits((x, y), val, val, 10),
                seed=0,
                device=device,
                workdir=Path(workdir),
            )
        )
        history = trainer.fit().history
    return n / history[1]["train.epoch_seconds"]  # the epoch's time ends at its one host sync


def engine_row(
    table: Table, name: str, size: Size, device: torch.device, results: dict[str, float], **train: object
) -> None:
    protocol = slice_protocol(size, device, **train)
    rate = engine_samples_per_second(size, device, protocol)
    results[name] = rate
    achieved = rate * flops_per_example(size, protocol) / 1e12
    bf16 = train.get("precision") == "bf16"
    top = peak(torch.cuda.get_device_name(device), bf16) if device.type == "cuda" else None
    share = (
        f"{achieved / top:.1%} of {top:g} ({'bf16' if bf16 else 'tf32'})"
        if top
        else ("unknown peak for this device" if device.type == "cuda" else "CPU: no peak table")
    )
    table.add(
        name,
        f"{rate:,.0f}",
        f"{achieved:.3g}",
        share,
        f"{size.steps} steps x batch {size.batch}, {size.student} / {size.teacher}",
    )


# ---- (b) the official-repository-style loop -------------------------------------------------------------------
class PILCifar(torch.utils.data.Dataset):
    """CIFAR-style dataset: uint8 HWC images in memory, each returned as a PIL image through the transform."""

    def __init__(self, images, labels, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def rslad_kl(student_logits, teacher_probs):
    return F.kl_div(F.log_softmax(student_logits, dim=1), teacher_probs, reduction="sum") / len(student_logits)


def official_samples_per_second(size: Size, device: torch.device) -> float:
    """RSLAD written the usual way: PIL transforms in DataLoader workers, the attack in eval mode, `.item()`."""
    import numpy as np
    from torchvision import transforms

    n = size.steps * size.batch
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    transform = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
    )
    loader = torch.utils.data.DataLoader(
        PILCifar(images, labels, transform),
        batch_size=size.batch,
        shuffle=True,
        num_workers=size.workers,
        pin_memory=device.type == "cuda",
    )
    student, teacher = networks(size, device)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    seconds = 0.0
    for _epoch in range(2):  # the first epoch is warm-up (workers, autotuning)
        sync(device)
        started = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                teacher_probs = F.softmax(teacher(x), dim=1)
            student.eval()
            x_adv = (x + 0.001 * torch.randn_like(x)).detach()
            for _ in range(10):
                x_adv.requires_grad_(True)
                (grad,) = torch.autograd.grad(rslad_kl(student(x_adv), teacher_probs), [x_adv])
                x_adv = torch.min(torch.max(x_adv.detach() + 2 / 255 * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
            student.train()
            loss = 5 / 6 * rslad_kl(student(x_adv), teacher_probs) + 1 / 6 * rslad_kl(student(x), teacher_probs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        sync(device)
        seconds = time.perf_counter() - started
    return n / seconds


# ---- (c) AutoAttack -------------------------------------------------------------------------------------------
def autoattack_model(size: Size, device: torch.device) -> tuple[nn.Module, str]:
    from rkdbench.teachers.card import default_model_dir
    from rkdbench.teachers.load import load_teacher

    card = rkdbench.create("teacher", "cifar10/Linf/AutoAttack-example-R18")
    bundled = load_teacher(card, default_model_dir(), device)  # found inside the installed pyautoattack wheel
    if size.aa_model == "bundled":
        return bundled, card.name
    # smoke: a steep random linear model, whose points APGD-CE breaks at once (a random CNN's near-constant logits
    # would leave every point robust, and the CPU would spend minutes on the later stages)
    torch.manual_seed(0)
    toy = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with torch.no_grad():
        toy[1].weight.mul_(50)
    return toy.to(device).eval(), "a random linear toy model (the bundled ResNet-18 loaded fine)"


def smooth_images(n: int, device: torch.device) -> torch.Tensor:
    """Low-frequency random images: closer to natural images than pixel noise."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    return F.interpolate(coarse, size=32, mode="bilinear", align_corners=False).clamp(0, 1).to(device)


def autoattack_rows(table: Table, size: Size, device: torch.device) -> None:
    from pyautoattack import AutoAttack

    from rkdbench.attacks.base import predict, preserved_rng

    model, name = autoattack_model(size, device)
    x = smooth_images(size.aa_points, device)
    y = predict(model, x, size.aa_points)
    batch = size.aa_points
    plugin = rkdbench.create("attack", "autoattack", norm="Linf", eps=EPS, seed=0, batch_size=batch)
    with torch.enable_grad():
        model(x[:2].clone().requires_grad_()).sum().backward()  # warm-up
    for label, run in (
        ("(c) AutoAttack standard: our plugin", lambda: plugin.run(model, x, y).robust_accuracy),
        (
            "(c) AutoAttack standard: pyautoattack direct",
            lambda: float(
                (
                    predict(
                        model,
                        AutoAttack(
                            model, norm="Linf", eps=EPS, seed=0, version="standard", device=device
                        ).run_standard_evaluation(x, y, batch_size=batch)[0],
                        batch,
                    )
                    == y
                )
                .float()
                .mean()
            ),
        ),
    ):
        with preserved_rng():
            sync(device)
            started = time.perf_counter()
            robust = run()
            sync(device)
            seconds = time.perf_counter() - started
        table.add(
            label,
            f"{size.aa_points / seconds:,.1f}",
            "",
            "",
            f"{size.aa_points} points in {seconds:.1f}s, robust {robust:.1%}, batch {batch}, {name}",
        )


# ---- (d) the evaluation batch size ----------------------------------------------------------------------------
def batch_size_rows(table: Table, size: Size, device: torch.device) -> None:
    from rkdbench.evaluation.batching import choose_batch_size

    student, teacher = networks(size, device)
    for role, model in (("student", student.eval()), ("teacher", teacher)):
        chosen, how = choose_batch_size(model, (3, 32, 32), device)
        table.add(f"(d) eval batch size: {role} {getattr(size, role)}", "", "", "", f"{chosen} ({how})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Every path at toy size on the CPU.")
    parser.add_argument("--budget", type=float, default=None, help="Seconds for everything (default 480; smoke 900).")
    parser.add_argument("--steps", type=int, default=None, help="Timed steps per training row (default 30).")
    parser.add_argument("--aa-points", type=int, default=None, help="AutoAttack points (default 256).")
    args = parser.parse_args()
    if args.smoke:
        size = Size(
            "cnn-tiny",
            "cnn-small",
            {},
            batch=8,
            steps=args.steps or 2,
            aa_points=args.aa_points or 4,
            aa_model="toy",
            workers=1,
        )
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            sys.exit("gpu_check: no CUDA device (use --smoke for the CPU dry run)")
        size = Size(
            "resnet-18",
            "wrn-34-10",
            {"sub_block1": True},
            batch=128,
            steps=args.steps or 30,
            aa_points=args.aa_points or 256,
            aa_model="bundled",
            workers=min(8, os.cpu_count() or 1),
        )
        device = torch.device("cuda")
    budget = Budget(args.budget or (900 if args.smoke else 480))
    print(machine_line(), flush=True)
    print(
        f"gpu_check {'--smoke ' if args.smoke else ''}on {device}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"budget {budget.left:.0f}s",
        flush=True,
    )
    table = Table()
    rates: dict[str, float] = {}
    # rough seconds a row needs on the H200 (measured rows are shorter); the compile row goes last: it is the least sure
    plan = [
        ("(a) engine RSLAD fp32", 45, {"precision": "fp32", "channels_last": "off"}),
        ("(a) engine RSLAD bf16", 30, {"precision": "bf16", "channels_last": "off"}),
        ("(a) engine RSLAD bf16 + channels_last", 30, {"precision": "bf16", "channels_last": "on"}),
    ]
    for name, needs, train in plan:
        guarded(
            table,
            name,
            budget,
            needs,
            lambda name=name, train=train: engine_row(table, name, size, device, rates, **train),
        )

    def official() -> None:
        rate = official_samples_per_second(size, device)
        ratio = (
            f"engine fp32 / official = {rates['(a) engine RSLAD fp32'] / rate:.2f}"
            if "(a) engine RSLAD fp32" in rates
            else "no engine fp32 row to compare"
        )
        table.add(
            "(b) official-style loop RSLAD fp32",
            f"{rate:,.0f}",
            "",
            "",
            f"{ratio}; PIL transforms, DataLoader {size.workers} workers, .item() per step",
        )

    guarded(table, "(b) official-style loop RSLAD fp32", budget, 45, official)
    guarded(table, "(d) eval batch size", budget, 5, lambda: batch_size_rows(table, size, device))
    guarded(table, "(c) AutoAttack standard", budget, 120, lambda: autoattack_rows(table, size, device))
    name = "(a) engine RSLAD bf16 + channels_last + compile"
    guarded(
        table,
        name,
        budget,
        150,
        lambda: engine_row(table, name, size, device, rates, precision="bf16", channels_last="on", compile=True),
    )
    print()
    print(table.render())
    print(f"({budget.left:.0f}s of the budget left)")


if __name__ == "__main__":
    main()
