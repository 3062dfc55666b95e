"""Tuning every method with the same budget on the validation split (issue 18; ../shared/TUNING.md).

`space` (the distributions of a search space, re-exported here for plugin authors: `from rkdbench.tuning import
LogUniform`), `checks` (a space against the parameters it ranges over), `objective` (the validation metrics a study
may maximize), `budget` (the budget's check and the expected best score after n trials), `samplers` (seeded samplers
and the pruner), `storage` (where studies live), `study` (a study's identity, trial 0, and exactly N finished trials
over any number of workers) and `plan` (every option of a study checked before anything is created). Optuna is
imported only inside the functions that need it.
"""

from __future__ import annotations

from .space import Choice, IntRange, LogUniform, Uniform

__all__ = ["LogUniform", "Uniform", "IntRange", "Choice"]
