"""The digits teacher: PGD-AT on `cnn-large` (94k parameters), built and cached by the harness itself
(`rkdbench teachers build digits/Linf/rkdbench-cnn-large`). Its recipe is fixed, like any released teacher:
changing a protocol's eps does not retrain it.
"""

from __future__ import annotations

from rkdbench import hookimpl
from rkdbench.teachers import TeacherCard

__all__ = ["DIGITS_TEACHER", "DIGITS_NATURAL_TEACHER"]

DIGITS_TEACHER = TeacherCard(
    name="digits/Linf/rkdbench-cnn-large",
    architecture="cnn-large",
    dataset="digits",
    norm="Linf",
    eps=0.15,
    num_classes=10,
    in_channels=1,
    source="built by rkdbench: PGD-AT (10 steps of eps/4) on the digits-linf protocol, best validation PGD epoch",
    license="BSD-3-Clause data (scikit-learn digits); weights produced locally",
    recipe={"protocol": "digits-linf", "method": "pgd-at", "seed": 0,
            "set": {"train.epochs": 30, "train.lr": 0.05}},
)


# The naturally trained teacher for multi-teacher methods (MTARD's and IAD-II's `natural` role); it lives
# under Linf like RobustBench's `Standard` model, whose robust accuracy is near zero.
DIGITS_NATURAL_TEACHER = TeacherCard(
    name="digits/Linf/rkdbench-cnn-large-standard",
    architecture="cnn-large",
    dataset="digits",
    norm="Linf",
    eps=0.15,
    num_classes=10,
    in_channels=1,
    source="built by rkdbench: standard (clean CE) training on the digits-linf protocol, best validation epoch",
    license="BSD-3-Clause data (scikit-learn digits); weights produced locally",
    recipe={"protocol": "digits-linf", "method": "standard", "seed": 0, "set": {"train.epochs": 30, "train.lr": 0.05}},
)


@hookimpl
def register_teachers(register):
    register(DIGITS_TEACHER)
    register(DIGITS_NATURAL_TEACHER)
