"""The digits teachers, built and cached by the harness itself (`rkdbench teachers build <id>`): PGD-AT on
`cnn-large` (94k parameters) as the robust teacher, and a naturally trained `cnn-large` for the `natural`
role of multi-teacher methods (MTARD, IAD-II; filed under Linf like RobustBench's `Standard`). Their recipes
are fixed, like any released teacher's: changing a protocol's eps does not retrain them.
"""

from __future__ import annotations

from rkdbench import TeacherCard, hookimpl

__all__ = ["DIGITS_TEACHER", "DIGITS_NATURAL_TEACHER"]


def _digits_cnn_large(name: str, method: str, how: str, selection: str) -> TeacherCard:
    chosen = {"best-val": "best validation (PGD) epoch", "last": "last epoch"}[selection]
    return TeacherCard(
        name=name,
        architecture="cnn-large",
        dataset="digits",
        norm="Linf",
        eps=0.15,
        num_classes=10,
        in_channels=1,
        source=f"built by rkdbench: {how} on the digits-linf protocol, 30 epochs, {chosen}",
        license="BSD-3-Clause data (scikit-learn digits); weights produced locally",
        recipe={
            "protocol": "digits-linf",
            "method": method,
            "seed": 0,
            "set": {"train.epochs": 30, "train.lr": 0.05},
            **({} if selection == "best-val" else {"selection": selection}),
        },
    )


DIGITS_TEACHER = _digits_cnn_large("digits/Linf/rkdbench-cnn-large", "pgd-at", "PGD-AT (10 steps of eps/4)", "best-val")
# MTARD's natural teacher is the final checkpoint of clean training, as in the official code; selecting it on
# validation PGD accuracy (always ~0 for a non-robust network) picked epoch 0 (27% clean accuracy).
DIGITS_NATURAL_TEACHER = _digits_cnn_large(
    "digits/Linf/rkdbench-cnn-large-standard", "standard", "standard (clean cross-entropy) training", "last"
)


@hookimpl
def register_teachers(register):
    register(DIGITS_TEACHER)
    register(DIGITS_NATURAL_TEACHER)
