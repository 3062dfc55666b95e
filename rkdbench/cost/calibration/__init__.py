"""Measured cost: time a few real training steps and attack batches on this device, then predict a suite's wall time.

`calibrate` runs, for each (method, student, teachers) combination of a suite, the engine's own `fit()` for a
warm-up epoch and three short timed ones on synthetic data of the dataset's shape (the real architectures, random
weights: a step's time does not depend on the weights), and keeps the median seconds per training step, per
validation point (the protocol's PGD-`val_pgd_steps`) and the rest of an epoch (checkpoints). For each
`[eval.attacks]` entry it runs the real attack plugin at two point counts through a wrapper that no attack can
break (the student's logits scaled down plus a fixed margin), so every attack runs its full course on every point:
seconds per batch = fixed + per point x points. AutoAttack runs its later stages only on the points still robust
after APGD-CE, so its first stage is timed separately: a chunk costs CE(correct points) + rest(robust points),
which needs the expected clean and robust accuracy (an assumption the caller states: by default the teacher
card's numbers). The student specialization and the diagnostics are timed per point the same way. Every
measurement is repeated (three times by default) and cached as the median with its spread; one whose repetitions
disagree beyond the tolerance (a busy machine) is said in one line, cached as doubtful and measured again by the
next `calibrate` (`repeat`). Results are cached per device (GPU or CPU model), torch version and thread count, in
`$RKDBENCH_CALIBRATION_DIR` (default ~/.cache/rkdbench/calibration).
"""

from __future__ import annotations

from ..repeat import REPEATS, TOLERANCE, Spread, judge, spread_of
from .measure import AttackSample, Sampler, calibrate_cells, measure_attack, measure_per_point, measure_training
from .predict import Prediction, attack_seconds, predict_cell
from .store import (
    CLOCKS,
    Calibration,
    Linear,
    TrainTiming,
    attack_key,
    calibration_dir,
    device_identity,
    first_stage_spec,
    train_key,
)

__all__ = [
    "calibration_dir",
    "device_identity",
    "Linear",
    "TrainTiming",
    "Calibration",
    "Prediction",
    "calibrate_cells",
    "predict_cell",
    "CLOCKS",
    "train_key",
    "attack_key",
    "first_stage_spec",
    "attack_seconds",
    "measure_training",
    "measure_attack",
    "measure_per_point",
    "AttackSample",
    "Sampler",
    "REPEATS",
    "TOLERANCE",
    "Spread",
    "judge",
    "spread_of",
]
