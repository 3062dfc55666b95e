"""Final evaluation of a trained model under the protocol: clean accuracy and every `[eval.attacks]` entry
(PGD-20 and AutoAttack for the built-in protocols) on the first `n_examples` test points, in eval mode.

Returns the accuracies and the per-example correctness of each attack plus the worst case over attacks.
The global RNG is restored afterwards, so evaluation never shifts a training RNG stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import check_attack_inputs, predict, preserved_rng
from .config import Protocol

__all__ = ["Evaluation", "evaluate", "test_points"]


@dataclass
class Evaluation:
    """Accuracies (`clean_acc`, `<label>_acc`, `worst_acc`), per-example flags, attack info, seconds per attack."""

    metrics: dict[str, float]
    per_example: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def test_points(protocol: Protocol, test: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The first `eval.n_examples` test points in file order (all of them when n_examples is 0)."""
    n = int(protocol.section("eval")["n_examples"]) or len(test[1])
    return test[0][:n], test[1][:n]


def evaluate(model: nn.Module, protocol: Protocol, x: Tensor, y: Tensor) -> Evaluation:
    """Run clean + every protocol eval attack; attacks are built through the registry (plugins)."""
    from . import create

    threat, cfg = protocol.section("threat"), protocol.section("eval")
    model.eval()
    batch_size = int(cfg["batch_size"])
    check_attack_inputs(model, x, batch_size, owner="evaluation")
    correct = predict(model, x, batch_size) == y
    per_example = {"clean": correct.cpu()}
    metrics = {"clean_acc": float(correct.float().mean())}
    worst = correct.clone()
    info: dict[str, Any] = {}
    with preserved_rng():
        for label, spec in cfg["attacks"].items():
            params = {k: v for k, v in spec.items() if k != "attack"}
            attack = create("attack", spec["attack"], norm=threat["norm"], eps=float(threat["eps"]),
                            seed=int(cfg["seed"]), batch_size=batch_size, **params)
            started = time.perf_counter()
            result = attack.run(model, x, y)
            seconds = time.perf_counter() - started
            robust = result.robust & correct  # a point misclassified clean is never counted robust
            per_example[label] = robust.cpu()
            worst &= robust
            metrics[f"{label}_acc"] = float(robust.float().mean())
            metrics[f"{label}_seconds"] = seconds
            # AutoAttack's robust accuracy after each of its stages (from its logger): where the points fell
            metrics.update({f"{label}.{stage}_acc": value for stage, value in result.info.get("per_attack", {}).items()})
            info[label] = result.info
    per_example["worst"] = worst.cpu()
    metrics["worst_acc"] = float(worst.float().mean())
    return Evaluation(metrics=metrics, per_example=per_example, info=info)
