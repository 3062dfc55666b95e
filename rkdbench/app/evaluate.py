"""`rkdbench evaluate MODEL --protocol ID`: evaluate one model, a registered teacher or a checkpoint file, under a
protocol's evaluation alone (RobustBench style: the first n test points in order, eval mode, the protocol's
seed), without training. The run goes to the protocol's MLflow experiment tagged `rkdbench.kind = evaluation`
(never a leaderboard cell); for a teacher, the numbers are also written into its measured card under
`evaluations.<protocol hash>`. Attack chunks are saved under `<results>/evaluations/<key>/`, so a killed
evaluation resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from ..attacks.entries import check_attack_entries
from ..attacks.traits import HOST_COLUMNS
from ..config import Protocol, canonical_hash, load_protocol
from ..data import load_splits
from ..errors import ConfigError, UserError
from ..evaluation.evaluate import Evaluation, evaluate, test_points
from ..evaluation.flags import FLAG_TAGS, join_flags
from ..tracking import Tracker, git_sha, schema
from ..training.checkpoint import load_verified, sha256_file

__all__ = ["EvaluationReport", "evaluate_model", "load_model"]


@dataclass
class LoadedModel:
    """A model ready to attack, what it is (`name`, `architecture`, file `sha256`), and its teacher card if any."""

    model: nn.Module
    name: str
    architecture: str
    sha256: str
    card: Any = None


@dataclass
class EvaluationReport:
    model: str
    protocol: Protocol
    run_id: str
    evaluation: Evaluation
    n_examples: int
    card_path: Path | None = None

    def summary(self) -> str:
        """One line: every accuracy, the points, the protocol, the run, and the flags if any."""
        m = self.evaluation.metrics
        keys = {name: schema.parse_metric_key(name) for name in m}
        accs = ", ".join(
            f"{HOST_COLUMNS.get(key.label, key.label)} {m[name]:.1%}"
            for name, key in keys.items()
            if key is not None and key.is_accuracy
        )
        flags = f"; flags: {join_flags(self.evaluation.flags)}" if self.evaluation.flags else ""
        return (
            f"{self.model}: {accs} on {self.n_examples} test points (protocol {self.protocol.name}, hash "
            f"{self.protocol.hash[:12]}; run {self.run_id}){flags}"
        )


def load_model(
    ref: str, protocol: Protocol, model_dir: Path, architecture: str | None, num_classes: int, in_channels: int
) -> LoadedModel:
    """A registered teacher id (loaded with its sha256 check) or a checkpoint path, which needs `architecture`."""
    from ..plugins import create, get_registry
    from ..teachers.load import load_teacher, load_weights
    from ..teachers.model_dir import teacher_path

    registry = get_registry()
    if ref in registry.names("teacher"):
        card = registry.get("teacher", ref).obj
        dataset = protocol.header.dataset
        if card.dataset != dataset:
            raise ConfigError(
                f"teacher {ref!r} is a {card.dataset} model; protocol {protocol.name!r} evaluates on {dataset}"
            )
        model = load_teacher(card, model_dir)
        return LoadedModel(model, ref, card.architecture, sha256_file(teacher_path(card, model_dir)), card)
    path = Path(ref)
    if not path.is_file():
        raise UserError(
            f"MODEL {ref!r} is neither a registered teacher id nor an existing checkpoint file "
            f"(teachers: {', '.join(registry.names('teacher'))})"
        )
    if architecture is None:
        raise UserError(
            f"MODEL {ref} is a checkpoint file: give --architecture (one of: "
            f"{', '.join(registry.names('architecture'))})"
        )
    model = create("architecture", architecture, num_classes=num_classes, in_channels=in_channels)
    load_weights(model, load_verified(path), f"checkpoint {path} (--architecture {architecture})")
    return LoadedModel(model.eval().requires_grad_(False), str(path), architecture, sha256_file(path))


def evaluate_model(
    ref: str,
    protocol_ref: str,
    results: Path,
    model_dir: Path,
    n_examples: int | None = None,
    architecture: str | None = None,
    device: str | None = None,
    data_dir: Path | None = None,
) -> EvaluationReport:
    """Load MODEL, evaluate it on the protocol's test points, log one MLflow run, and update a teacher's card."""
    from ..training.engine import pick_device

    overrides = {} if n_examples is None else {"eval.n_examples": n_examples}
    protocol = load_protocol(protocol_ref, overrides, where="--n-examples")
    check_attack_entries(protocol)
    splits = load_splits(protocol, data_dir)
    loaded = load_model(ref, protocol, model_dir, architecture, splits.num_classes, splits.input_shape[0])
    tracker = Tracker(results)
    tracker.check_reachable()  # before minutes of attacks, not after
    target = pick_device(device or protocol.train.device)
    model = loaded.model.to(target).eval()
    x, y = (t.to(target) for t in test_points(protocol, splits.test))
    key = canonical_hash({"model": loaded.sha256, "architecture": loaded.architecture, "protocol": protocol.hash})
    workdir = results / "evaluations" / key
    started = time.perf_counter()
    evaluation = evaluate(model, protocol, x, y, state_dir=workdir / "eval")
    seconds = time.perf_counter() - started

    experiment = tracker.experiment_id(protocol.experiment_name, schema.experiment_tags(protocol.name, protocol.hash))
    tags = schema.evaluation_tags(
        protocol=protocol.name,
        protocol_hash=protocol.hash,
        protocol_overrides=str(protocol.overrides),
        model=loaded.name,
        model_sha256=loaded.sha256,
        architecture=loaded.architecture,
        git_sha=git_sha(),
        flags_tag=FLAG_TAGS["last"],
        flags=join_flags(evaluation.flags),
        teacher=loaded.name if loaded.card is not None else None,
    )
    run_id = tracker.create_run(experiment, f"evaluate-{Path(loaded.name).name}", tags)
    params = schema.protocol_params(protocol.data)
    params.update(
        {
            "model.ref": loaded.name,
            "model.architecture": loaded.architecture,
            "model.sha256": loaded.sha256,
            "model.parameters": sum(p.numel() for p in model.parameters()),
        }
    )
    tracker.log_params(run_id, params)
    split = schema.selection_split("last")
    metrics = schema.with_split(split, evaluation.metrics)
    metrics.update({schema.TEST_N_EXAMPLES: float(len(y)), schema.metric_key(split, "seconds", kind=""): seconds})
    tracker.log_metrics(run_id, metrics)
    frame = pd.DataFrame({k: v.numpy() for k, v in evaluation.per_example.items()})
    frame.insert(0, "index", range(len(frame)))
    frame.to_parquet(workdir / "per_example.parquet", index=False)
    tracker.log_artifact(run_id, workdir / "per_example.parquet")
    tracker.finish(run_id, "FINISHED")
    report = EvaluationReport(loaded.name, protocol, run_id, evaluation, len(y))
    if loaded.card is not None:
        report.card_path = _record_on_card(loaded, protocol, report, model_dir)
    return report


def _record_on_card(loaded: LoadedModel, protocol: Protocol, report: EvaluationReport, model_dir: Path) -> Path:
    """Add this evaluation to the teacher's measured card under `evaluations.<protocol hash>`, keeping the rest."""
    from ..teachers.build import evaluation_entry
    from ..teachers.model_dir import read_measured_card, write_measured_card

    measured = read_measured_card(loaded.card, model_dir) or {"id": loaded.name}
    measured.setdefault("evaluations", {})[protocol.hash] = evaluation_entry(
        protocol,
        report.n_examples,
        loaded.sha256,
        report.evaluation.metrics,
        report.evaluation.flags,
        run_id=report.run_id,
    )
    return write_measured_card(loaded.card, model_dir, measured)
