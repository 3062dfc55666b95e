"""Tuning every method with the same budget on the validation split (issue 18; ../shared/TUNING.md): `budget` (the
budget's check and the expected best score after n trials), `objective` (a trial's objective value, and the check that
a protocol has a validation split), `samplers` (seeded samplers and the pruner), `storage` (where studies live),
`study` (a study's identity, trial 0, and exactly N finished trials over any number of workers) and `plan` (every option
of a study checked before anything is created). The declarations tuning reads are lower down: the distributions of a
search space in `config.space` (plugin authors import them from `rkdbench`), the `[tune]` checks and objective names in
`config.tune`, a method's space check in `contracts.space`. Optuna is imported only inside the functions that need it.
"""
