"""What a suite would cost before anything trains: `rkdbench run SUITE --dry-run` lists each cell with its key and
estimated cost (wall time learned from finished cells of its kind in the results store, else measured where this
device is calibrated, else FLOPs at an assumed throughput; each says which), the total and the teacher files that
are missing; `rkdbench calibrate SUITE` measures the timings those predictions
come from. Both take a frozen request built by the command line and print with `click.echo`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..cost.repeat import REPEATS, TOLERANCE

__all__ = [
    "DryRunRequest",
    "Pricing",
    "pricing",
    "print_dry_run",
    "teacher_architectures",
    "echo_teacher_status",
    "CalibrateRequest",
    "calibrate_suite",
]


@dataclass(frozen=True)
class DryRunRequest:
    """Which cells to price and how: `gpu_tflops` None is the cost model's default throughput; `device` None is the
    protocol's; `as_json` prints one JSON document instead of lines; `results` is the store whose finished cells'
    logged times predict their kind (None: none)."""

    suite: Any  # a loaded rkdbench.config.Suite
    cells: list
    model_dir: Path
    gpu_tflops: float | None = None
    device: str | None = None
    as_json: bool = False
    results: Path | None = None


def teacher_architectures(cards: dict[str, Any]) -> dict[str, tuple[str, tuple]]:
    """teacher id -> (architecture, hashable arch kwargs): what the cost model keys teacher passes on."""
    return {
        t: (
            card.architecture,
            tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in card.arch_kwargs.items())),
        )
        for t, card in cards.items()
    }


@dataclass(frozen=True)
class Pricing:
    """What pricing a suite's cells needs: the dataset (its shape and split sizes: None when it does not declare
    them), the sustained TFLOP/s of the FLOP-based estimate, the teachers' cards and architectures, the device."""

    dataset: Any
    sizes: Any
    tflops: float
    cards: dict[str, Any]
    architectures: dict[str, Any]
    target: Any


def pricing(protocol, cells: list, gpu_tflops: float | None, device: str | None) -> Pricing:
    from ..cost.estimate import DEFAULT_GPU_TFLOPS
    from ..plugins import create, get_registry
    from ..training.engine import pick_device

    dataset = get_registry().get("dataset", protocol.header.dataset).obj
    teacher_ids = sorted({t for c in cells for t in [c.teacher, *c.extra_teachers.values()] if t != "none"})
    cards = {t: create("teacher", t) for t in teacher_ids}
    return Pricing(
        dataset,
        getattr(dataset, "split_sizes", None),
        gpu_tflops or DEFAULT_GPU_TFLOPS,
        cards,
        teacher_architectures(cards),
        pick_device(device or protocol.train.device),
    )


def print_dry_run(request: DryRunRequest) -> None:
    """The cells with their keys and estimated cost, the totals, and the teacher files that are missing."""
    from ..cost.estimate import estimate_cell
    from ..cost.planning import format_seconds, plan_cells, plan_json

    suite, cells, model_dir = request.suite, request.cells, request.model_dir
    protocol = suite.protocol
    priced = pricing(protocol, cells, request.gpu_tflops, request.device)
    dataset, sizes, tflops, arch = priced.dataset, priced.sizes, priced.tflops, priced.architectures
    cards, target = priced.cards, priced.target
    echo = (lambda line: None) if request.as_json else click.echo
    plans, calibration = plan_cells(cells, model_dir, sizes, target, learned=_learned(request, echo))
    echo(f"suite {suite.name}: {len(cells)} cells under protocol {protocol.experiment_name} (hash {protocol.hash})")
    total, predicted, rows = 0.0, 0.0, []
    for i, cell in enumerate(cells):
        line, row = f"  {cell.key}  {cell.label}", {"key": cell.key, "label": cell.label}
        if sizes is not None:
            cost = estimate_cell(cell, arch, tuple(dataset.input_shape), dataset.num_classes, sizes, tflops)
            total += cost.gpu_hours
            line += (
                f"  [passes/example: student {cost.student_forward:g}f+{cost.student_backward:g}b, teacher "
                f"{cost.teacher_forward:g}f+{cost.teacher_backward:g}b; {cost.train_tflop + cost.eval_tflop:,.0f} "
                f"TFLOP; ~{cost.gpu_hours:.2f} GPU-h]"
            )
        prediction = plans[i].prediction
        if prediction is not None:
            predicted += prediction.total
            line += (
                f"  predicted {format_seconds(prediction.total)} (train {format_seconds(prediction.train)}, "
                f"eval {format_seconds(prediction.eval)}; {_source_words(plans[i])})"
            )
        if sizes is not None:
            row.update(
                gpu_hours=cost.gpu_hours,
                passes={
                    "student_forward": cost.student_forward,
                    "student_backward": cost.student_backward,
                    "teacher_forward": cost.teacher_forward,
                    "teacher_backward": cost.teacher_backward,
                },
            )
        row["predicted_seconds"] = plan_json(plans[i], row.get("gpu_hours"))
        echo(line)
        rows.append(row)
    predicted_plans = [p for p in plans if p.prediction is not None]
    if sizes is not None:
        echo(
            f"estimated total: ~{total:.1f} GPU-hours at {tflops:g} sustained TFLOP/s (--gpu-tflops; an order "
            f"of magnitude: AutoAttack priced for half the points staying robust)"
        )
    if predicted_plans:
        _echo_prediction_summary(plans, calibration, predicted, echo)
    if sizes is not None:
        if len(predicted_plans) < len(cells):
            echo(
                f"no calibration on {target.type} ({calibration.identity['device']}) and no finished cell of their "
                f"kind for {len(cells) - len(predicted_plans)} "
                f"cells: they fall back to the FLOP-based assumption; run `rkdbench calibrate {suite.name}` "
                f"on this device to measure them"
            )
    missing = echo_teacher_status(cards, model_dir, echo)
    if request.as_json:
        click.echo(
            json.dumps(
                {
                    "suite": suite.name,
                    "protocol": protocol.experiment_name,
                    "protocol_hash": protocol.hash,
                    "device": calibration.identity if calibration is not None else None,
                    "cells": rows,
                    "total_gpu_hours": total,
                    "total_predicted_seconds": predicted if len(predicted_plans) == len(cells) else None,
                    "missing_teachers": missing,
                },
                indent=2,
            )
        )


SOURCE_WORDS = {
    "learned": "from finished cells",
    "calibration": "from calibration",
    "learned elsewhere": "from finished cells on another device",
}


def _source_words(plan) -> str:
    doubt = ", doubtful" if plan.source == "calibration" and "doubtful" in plan.basis else ""
    return SOURCE_WORDS[plan.source] + doubt


def _learned(request: DryRunRequest, echo):
    """The store's finished cells' logged times (none without a store; one line when it does not answer)."""
    from ..cost.learned import LearnedTimes
    from ..tracking import Tracker
    from ..tracking.journal import is_unreachable, quick_http_failures

    if request.results is None:
        return None
    quick_http_failures()
    tracker = Tracker(request.results)
    try:
        return LearnedTimes.from_store(tracker, {request.suite.protocol.hash})
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        echo(f"finished cells' times not read: tracking store {tracker.uri} unreachable; predicting from calibration")
        return None


def _echo_prediction_summary(plans: list, calibration, predicted: float, echo) -> None:
    """Where the predictions came from: the finished runs each kind's time is the median of, the calibration and
    the accuracy it assumed, any doubt about it, and the total."""
    from ..cost.planning import format_seconds

    identity = calibration.identity
    by_source = {s: [p for p in plans if p.source == s] for s in ("learned", "calibration", "learned elsewhere")}
    echo(
        f"predicted wall time on {identity['device']} ({identity['threads']} threads): {format_seconds(predicted)} "
        f"for {sum(map(len, by_source.values()))} of {len(plans)} cells"
    )
    learned = Counter(p.basis for p in by_source["learned"] + by_source["learned elsewhere"])
    for basis, n in sorted(learned.items()):
        echo(f"  {n} cell{'s' if n != 1 else ''} from the logged times of their kind: the median of {basis}")
    calibrated = by_source["calibration"]
    if calibrated:
        assumed = sorted(
            {f"{p.accuracy[0]:.0%} clean / {p.accuracy[1]:.0%} robust from {p.accuracy_from}" for p in calibrated}
        )
        echo(
            f"  {len(calibrated)} cell{'s' if len(calibrated) != 1 else ''} never ran here, priced from calibration "
            f"{calibration.path}: AutoAttack priced for {'; '.join(assumed)}; best-val counted as evaluated apart"
        )
        for basis in sorted({p.basis for p in calibrated if "doubtful" in p.basis}):
            echo(f"  {basis}")


def echo_teacher_status(cards: dict[str, Any], model_dir: Path, echo) -> list[str]:
    """Say which teacher files are missing (or all present); returns the ids not present."""
    from ..teachers.model_dir import member_paths, missing_teacher_message, teacher_status

    statuses = {t: teacher_status(card, model_dir) for t, card in cards.items()}  # hashes every file: once each
    missing = [t for t, status in statuses.items() if status != "present"]
    for t in missing:
        echo(
            f"teacher {statuses[t]}: "
            + (
                missing_teacher_message(cards[t], member_paths(cards[t], model_dir)[0])
                if statuses[t] == "missing"
                else f"{t}: {member_paths(cards[t], model_dir)}"
            )
        )
    if not missing:
        echo(f"teachers: all {len(cards)} present in {model_dir}")
    return missing


@dataclass(frozen=True)
class CalibrateRequest:
    """`rkdbench calibrate`: the suite (name or path) with its `--set` overrides, the device (None: the
    protocol's), training steps per timed epoch, points per timed attack batch, whether to measure again, the
    repetitions of each measurement and the spread beyond which an entry is doubtful."""

    suite: str
    sets: tuple[str, ...] = ()
    device: str | None = None
    steps: int = 5
    points: int = 16
    redo: bool = False
    repeats: int = REPEATS
    tolerance: float = TOLERANCE


def calibrate_suite(request: CalibrateRequest) -> Path:
    """Time every (method, student, teacher) combination and evaluation attack of the suite on this device and
    save the calibration; returns the file it was saved to."""
    from ..config import load_suite, parse_set
    from ..cost.calibration import Calibration, calibrate_cells
    from ..run.cells import expand_cells
    from ..training.engine import pick_device

    loaded = load_suite(request.suite, parse_set(list(request.sets)))
    cells = expand_cells(loaded)
    target = pick_device(request.device or loaded.protocol.train.device)
    calibration = Calibration.load(target)
    click.echo(
        f"calibrating {loaded.name} on {calibration.identity['device']} ({calibration.identity['threads']} "
        f"threads, torch {calibration.identity['torch']})"
    )
    started = time.perf_counter()
    calibrate_cells(
        cells,
        target,
        calibration,
        steps=request.steps,
        points=request.points,
        redo=request.redo,
        repeats=request.repeats,
        tolerance=request.tolerance,
        say=lambda m: click.echo(f"  {m}"),
    )
    saved = calibration.save()
    click.echo(
        f"calibration saved to {saved} ({time.perf_counter() - started:.0f}s); "
        f"`rkdbench run {request.suite} --dry-run` predicts wall times from it"
    )
    return saved
