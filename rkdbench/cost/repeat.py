"""Repeated measurements and their agreement: `rkdbench calibrate` times everything `repeats` times, caches the
median and the spread of the repetitions ((max - min) / median), and marks an entry doubtful when its
repetitions are further apart than the tolerance. Measured: a calibration on a busy 2-core machine once cached a
training step 16x the quiet machine's, and every later `--dry-run` trusted it; a load that changes while a
measurement repeats shows as disagreement, and a doubtful entry is measured again by the next `calibrate`
instead of being kept for good.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["REPEATS", "TOLERANCE", "Spread", "spread_of", "judge", "doubt_line"]

REPEATS = 3  # repetitions of each measurement (`rkdbench calibrate --repeat`)
TOLERANCE = 0.3  # the widest (max - min) / median kept without doubt (`--tolerance`)


@dataclass(frozen=True)
class Spread:
    """How a measurement's repetitions agreed: how many, their widest (max - min) / median over the quantities
    measured, and whether that is beyond the tolerance."""

    repeats: int
    spread: float
    doubtful: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": round(self.spread, 4)}


def spread_of(samples: Sequence[float]) -> float:
    """(max - min) / median of the samples; 0 for fewer than two (nothing to compare) or a zero median."""
    if len(samples) < 2:
        return 0.0
    middle = statistics.median(samples)
    return (max(samples) - min(samples)) / middle if middle > 0 else 0.0


def judge(quantities: Mapping[str, Sequence[float]], tolerance: float) -> tuple[Spread, str]:
    """The spread of a measurement whose repetitions gave one sample list per quantity (an attack's seconds per
    batch at two point counts, say; named by their unit): the widest of them, doubtful beyond `tolerance`, and the
    name of that widest quantity."""
    widest = max(quantities, key=lambda name: spread_of(quantities[name]))
    repeats = max(len(samples) for samples in quantities.values())
    spread = spread_of(quantities[widest])
    return Spread(repeats, spread, spread > tolerance), widest


def _load() -> str:
    try:
        one_minute = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return ""
    return f"; load average {one_minute:.1f} on {os.cpu_count() or 1} cores"


def doubt_line(what: str, samples: Sequence[float], unit: str, spread: Spread, tolerance: float) -> str:
    """The one line `calibrate` prints for a doubtful entry: the repetitions of its widest quantity (in `unit`:
    seconds x 1000 for `ms...`), how far apart against the tolerance, the machine's load, and what happens to it."""
    scale = 1e3 if unit.startswith("ms") else 1.0
    values = ", ".join(f"{s * scale:.4g}" for s in samples)
    return (
        f"doubtful: {what}: {spread.repeats} repetitions disagree ({values} {unit}: {spread.spread:.0%} apart, "
        f"tolerance {tolerance:.0%}{_load()}); cached as doubtful and measured again by the next `rkdbench "
        f"calibrate` (run it when the machine is quiet)"
    )
