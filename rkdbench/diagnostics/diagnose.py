"""Optional evaluation diagnostics (protocol field `eval.diagnostics = true`): expected calibration error of the
model on clean and on PGD-20 inputs, and robust accuracy as eps grows (0.25x to 2x the protocol's eps) against the
stand-in (`AttackTraits.sweep_spec`) of the attack the protocol ranks by (AutoAttack's is its first stage,
`apgd-ce`), whose shape is checked by `rkdbench.evaluation.flags.eps_flags`. A robust accuracy that does not fall
as eps grows is a classic sign of gradient masking; calibration shows how much a student's confidence can
be trusted off and on the attack. Everything runs with the protocol's eval seed and batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.base import predict, preserved_rng
from ..attacks.pgd import pgd
from ..attacks.traits import AttackEntry, plugins_of, rank_label, sweep_entry
from ..config import Protocol
from ..evaluation.batching import eval_batch_size
from ..evaluation.evaluate import run_attack
from ..evaluation.flags import eps_flags
from ..tracking.schema import DIAG_ECE_ADV, DIAG_ECE_CLEAN, metric_key

__all__ = ["EPS_MULTIPLIERS", "Diagnostics", "expected_calibration_error", "sweep_attack", "eps_sweep", "diagnose"]

EPS_MULTIPLIERS = (0.25, 0.5, 1.0, 1.5, 2.0)
ECE_BINS = 15
ECE_PGD = {"steps": 20, "step_size": 0.25}  # the protocols' PGD-20: 20 steps of eps/4 from a uniform start


@dataclass
class Diagnostics:
    """`diag.*` metrics and the flags of the eps sweep."""

    metrics: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def expected_calibration_error(logits: Tensor, y: Tensor, bins: int = ECE_BINS) -> float:
    """ECE of the top-1 softmax confidence over `bins` equal-width bins (b/bins, (b+1)/bins]: the mean over
    points of |accuracy - mean confidence| of each point's bin (Guo et al. 2017)."""
    confidence, predicted = logits.detach().float().softmax(1).max(1)
    correct = (predicted == y).float()
    edges = torch.linspace(0, 1, bins + 1, device=confidence.device)
    index = torch.bucketize(confidence, edges[1:-1])  # right-closed bins, as in Guo et al.
    gap = torch.zeros(bins, device=confidence.device)
    count = torch.zeros(bins, device=confidence.device)
    gap.index_add_(0, index, correct - confidence)
    count.index_add_(0, index, torch.ones_like(confidence))
    return float(gap.abs().sum() / count.sum().clamp_min(1))


def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    with torch.inference_mode():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _pgd_inputs(model: nn.Module, protocol: Protocol, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    """The PGD-20 (CE) point of every test point, broken or not: calibration is measured on the attacked inputs."""
    threat = protocol.threat
    eps = threat.eps
    generator = torch.Generator(device=x.device).manual_seed(protocol.eval.seed)
    batches = []
    for i in range(0, len(x), batch_size):
        yb = y[i : i + batch_size]
        objective = lambda xa, yb=yb: F.cross_entropy(model(xa), yb, reduction="none")  # noqa: E731
        batches.append(
            pgd(
                objective,
                x[i : i + batch_size],
                eps=eps,
                step_size=ECE_PGD["step_size"] * eps,
                steps=ECE_PGD["steps"],
                norm=threat.norm,
                init="uniform",
                generator=generator,
            )
        )
    return torch.cat(batches) if batches else x.clone()


def sweep_attack(protocol: Protocol) -> AttackEntry:
    """The entry the eps sweep runs: the sweep stand-in declared by the attack of the label the protocol ranks by
    (its `eval.rank_by` when that is an attack, else its last final attack, else its last attack)."""
    specs = protocol.eval.attacks
    plugins = plugins_of(specs)
    rank_by = protocol.eval.rank_by if protocol.eval.rank_by in specs else None  # "clean" ranks, but is no attack
    label = rank_label(list(specs), specs, plugins, rank_by)
    return sweep_entry(specs[label], plugins)


def eps_sweep(
    model: nn.Module,
    protocol: Protocol,
    x: Tensor,
    y: Tensor,
    multipliers: tuple[float, ...] = EPS_MULTIPLIERS,
    batch_size: int | None = None,
) -> dict[float, float]:
    """Robust accuracy under `sweep_attack` at each multiple of the protocol's eps (clean-wrong points never
    count)."""
    eps = protocol.threat.eps
    batch_size = batch_size or eval_batch_size(protocol, model, x)
    correct = (predict(model, x, batch_size) == y).cpu()
    entry = sweep_attack(protocol)
    return {
        m: float(
            (run_attack(model, protocol, entry, x, y, eps=m * eps, batch_size=batch_size)[0] & correct).float().mean()
        )
        for m in multipliers
    }


def diagnose(model: nn.Module, protocol: Protocol, x: Tensor, y: Tensor, batch_size: int | None = None) -> Diagnostics:
    """`diag.ece_clean`, `diag.ece_adv` (PGD-20 inputs), `diag.eps_x<m>_acc` for each eps multiplier, and the
    sweep's flags; the model is put in eval mode and the global RNG is restored. `batch_size`: the one the
    evaluation used (the protocol's, or chosen from memory)."""
    model.eval()
    batch_size = batch_size or eval_batch_size(protocol, model, x)
    with preserved_rng():
        x_adv = _pgd_inputs(model, protocol, x, y, batch_size)
        sweep = eps_sweep(model, protocol, x, y, batch_size=batch_size)
    metrics = {
        DIAG_ECE_CLEAN: expected_calibration_error(_logits(model, x, batch_size), y),
        DIAG_ECE_ADV: expected_calibration_error(_logits(model, x_adv, batch_size), y),
    }
    metrics.update({metric_key("diag", f"eps_x{m:g}"): acc for m, acc in sweep.items()})
    return Diagnostics(metrics=metrics, flags=eps_flags(sweep))
