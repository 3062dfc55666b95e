"""Final evaluation of a trained model under the protocol: clean accuracy and every `[eval.attacks]` entry (PGD-20 and
AutoAttack for the built-in protocols) on the first `n_examples` test points, in eval mode.

Returns the accuracies, the per-example correctness of each attack plus the worst case over attacks, and the flags of
`rkdbench.evaluation.flags.sanity_flags`. The test points are attacked in fixed chunks of `eval.chunk_size` (0 = one
chunk), each with the same seed; given a `state_dir`, every finished chunk is saved there and an evaluation that was
killed resumes at the first missing chunk with exactly the numbers of an uninterrupted one. Like the batch size, the
chunk size changes the attacks' random starts, which is why it is a protocol field. The global RNG is restored
afterwards, so evaluation never shifts a training RNG stream.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.base import check_attack_inputs, predict, preserved_rng
from ..attacks.traits import CLEAN, WORST
from ..config import AttackEntry, Protocol, canonical_hash
from ..plugins import get_registry
from ..tracking.schema import SECONDS, metric_key
from ..training.checkpoint import CheckpointError, load_verified, save_atomic
from .batching import eval_batch_size
from .flags import sanity_flags

# what `evaluate` hands each attack's adversarial points to: (model, x_adv, y) -> per-example tensors (CPU), with an
# `identity` (str) that keys the saved chunks and `clean(x, y)` -> the reference's clean correctness
Probe = Any

__all__ = ["Evaluation", "evaluate", "test_points", "chunk_bounds", "run_attack", "attack_result", "weights_digest"]


@dataclass
class Evaluation:
    """Accuracies (`clean_acc`, `<label>_acc`, `worst_acc`), per-example flags, attack info, seconds per attack,
    the sanity `flags` (short codes, see `rkdbench.evaluation.flags`) and the batch size used."""

    metrics: dict[str, float]
    per_example: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    batch_size: int = 0  # the one used: the protocol's, or chosen from free memory (`eval.batch_size = 0`)


def test_points(protocol: Protocol, test: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The first `eval.n_examples` test points in file order (all of them when n_examples is 0)."""
    n = protocol.eval.n_examples or len(test[1])
    return test[0][:n], test[1][:n]


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """`[start, end)` of each chunk of `n` points; `chunk_size` 0 means one chunk. Fixed by n and size alone."""
    size = chunk_size or n
    return [(start, min(start + size, n)) for start in range(0, n, max(size, 1))]


def run_attack(
    model: nn.Module,
    protocol: Protocol,
    entry: AttackEntry,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    eps: float | None = None,
) -> tuple[Tensor, dict[str, Any], float]:
    """One `[eval.attacks]` entry on (x, y) with the protocol's threat and seed (or another `eps`) and the batch
    size `eval_batch_size` resolved: the attack's own robust flags (on the CPU), its info, and the seconds it
    took. The global RNG is restored."""
    result, seconds = attack_result(model, protocol, entry, x, y, batch_size=batch_size, eps=eps)
    return result.robust.cpu(), result.info, seconds


def attack_result(
    model: nn.Module,
    protocol: Protocol,
    entry: AttackEntry,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    eps: float | None = None,
) -> tuple[Any, float]:
    """`run_attack`'s whole `AttackResult` (the adversarial points included) and the seconds it took."""
    from ..plugins import create

    threat, seed = protocol.threat, protocol.eval.seed
    attack = create(
        "attack",
        entry.attack,
        norm=threat.norm,
        eps=threat.eps if eps is None else float(eps),
        seed=seed,
        batch_size=batch_size,
        **entry.options,
    )
    with preserved_rng():
        # a plugin that draws from the global RNG starts every chunk from the same state, so a chunk's result
        # never depends on the chunks run before it in this process
        torch.manual_seed(seed)
        started = time.perf_counter()
        result = attack.run(model, x, y)
    return result, time.perf_counter() - started


def weights_digest(model: nn.Module, *extra: tuple[str, Tensor]) -> str:
    """sha256 of the weights (and of the named `extra` tensors)."""
    digest = hashlib.sha256()
    for name, tensor in [*model.state_dict().items(), *extra]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _digest(model: nn.Module, x: Tensor, y: Tensor) -> str:
    """sha256 of the weights and the test points: a saved chunk is reused only for the very same model and data."""
    return weights_digest(model, ("x", x), ("y", y))


def _merge_infos(infos: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """One info for an attack run in chunks: the first chunk's, with check warnings and logs gathered from all,
    per-stage accuracies weighted by chunk size, and attacked points summed."""
    if len(infos) == 1:
        return infos[0]
    merged = dict(infos[0], chunks=len(infos))
    if any("warnings" in info for info in infos):
        merged["warnings"] = list(dict.fromkeys(w for info in infos for w in info.get("warnings", [])))
    if any("log" in info for info in infos):
        merged["log"] = [line for info in infos for line in info.get("log", [])]
    if any("attacked" in info for info in infos):
        merged["attacked"] = sum(int(info.get("attacked", 0)) for info in infos)
    stages = dict.fromkeys(stage for info in infos for stage in info.get("per_attack", {}))
    if stages:
        total = sum(sizes)
        merged["per_attack"] = {
            stage: sum(info.get("per_attack", {}).get(stage, 0.0) * size for info, size in zip(infos, sizes)) / total
            for stage in stages
        }
    return merged


def _chunk_path(state_dir: Path, label: str, index: int) -> Path:
    return state_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", label) / f"chunk-{index}.pt"


def _load_chunk(path: Path, key: str) -> dict[str, Any] | None:
    """A saved chunk, or None when there is none, it is unreadable, or it belongs to another evaluation."""
    if not path.is_file():
        return None
    try:
        record = load_verified(path)
    except CheckpointError:
        return None  # a cache entry: a corrupt one is recomputed, never trusted
    return record if isinstance(record, dict) and record.get("key") == key else None


def _attack_in_chunks(
    model: nn.Module,
    protocol: Protocol,
    label: str,
    x: Tensor,
    y: Tensor,
    state_dir: Path | None,
    digest: str,
    batch_size: int,
    probe: Probe | None = None,
) -> tuple[Tensor, dict[str, Any], float, dict[str, Tensor]]:
    """One `[eval.attacks]` entry over every chunk, each read back from `state_dir` when saved there for this
    very evaluation, else attacked (and saved): the robust flags, the merged info, the attack seconds, and the
    `probe`'s per-example values on each chunk's adversarial points (saved with the chunk)."""
    entry = protocol.eval.attacks[label]
    component = get_registry().get("attack", entry.attack)
    # the tables as written (`protocol.data`, `entry.table`), so that chunks saved before keep their keys
    identity = {
        "digest": digest,
        "label": label,
        "spec": entry.table,
        "threat": protocol.data["threat"],
        "seed": protocol.eval.seed,
        "batch_size": batch_size,
        "plugin": f"{component.dist}:{component.version}",  # new attack code never reuses old chunks
        **({"probe": probe.identity} if probe is not None else {}),
    }
    bounds = chunk_bounds(len(y), protocol.eval.chunk_size)
    robust = torch.zeros(len(y), dtype=torch.bool)
    infos, seconds = [], 0.0
    probed: dict[str, list[Tensor]] = {}
    for index, (start, end) in enumerate(bounds):
        key = canonical_hash({**identity, "chunk": [start, end]}, 64)
        path = None if state_dir is None else _chunk_path(state_dir, label, index)
        record = None if path is None else _load_chunk(path, key)
        if record is None:
            result, chunk_seconds = attack_result(
                model, protocol, entry, x[start:end], y[start:end], batch_size=batch_size
            )
            record = {
                "key": key,
                "robust": result.robust.cpu(),
                "info": result.info,
                "seconds": chunk_seconds,
                "probe": {} if probe is None else probe(model, result.x_adv, y[start:end]),
            }
            if path is not None:
                save_atomic(record, path)
        robust[start:end] = record["robust"]
        infos.append(record["info"])
        seconds += float(record["seconds"])
        for name, values in record.get("probe", {}).items():
            probed.setdefault(name, []).append(values)
    merged = _merge_infos(infos, [end - start for start, end in bounds])
    return robust, merged, seconds, {name: torch.cat(values) for name, values in probed.items()}


def evaluate(
    model: nn.Module,
    protocol: Protocol,
    x: Tensor,
    y: Tensor,
    state_dir: Path | None = None,
    probe: Probe | None = None,
) -> Evaluation:
    """Run clean + every protocol eval attack (built through the registry) chunk by chunk; with `state_dir`,
    reuse the chunks saved there by an earlier call on the same model, points and protocol, and save new ones.
    A `probe` (e.g. `rkdbench.evaluation.transfer.TeacherProbe`) sees each attack's adversarial points: its per-example
    values become `<label>.<name>` entries of `per_example`, and its `clean(x, y)` the `teacher_clean` entry."""
    attacks = protocol.eval.attacks
    model.eval()
    batch_size = eval_batch_size(protocol, model, x, None if state_dir is None else Path(state_dir) / "batch_size.json")
    check_attack_inputs(model, x, batch_size, owner="evaluation")
    correct = (predict(model, x, batch_size) == y).cpu()
    per_example = {CLEAN: correct}
    metrics = {metric_key(None, CLEAN): float(correct.float().mean())}
    worst = correct.clone()
    info: dict[str, Any] = {}
    digest = "" if state_dir is None else _digest(model, x, y)
    with preserved_rng():
        for label in attacks:
            robust, info[label], seconds, probed = _attack_in_chunks(
                model, protocol, label, x, y, None if state_dir is None else Path(state_dir), digest, batch_size, probe
            )
            per_example.update({f"{label}.{name}": values for name, values in probed.items()})
            robust &= correct  # a point misclassified clean is never counted robust
            per_example[label] = robust
            worst &= robust
            metrics[metric_key(None, label)] = float(robust.float().mean())
            metrics[metric_key(None, label, SECONDS)] = seconds
            # AutoAttack's robust accuracy after each of its stages (from its logger): where the points fell
            metrics.update(
                {
                    metric_key(None, label, stage=stage): value
                    for stage, value in info[label].get("per_attack", {}).items()
                }
            )
    per_example[WORST] = worst
    if probe is not None:
        per_example["teacher_clean"] = probe.clean(x, y)
    metrics[metric_key(None, WORST)] = float(worst.float().mean())
    return Evaluation(
        metrics=metrics,
        per_example=per_example,
        info=info,
        batch_size=batch_size,
        flags=sanity_flags(metrics, attacks, info),
    )
