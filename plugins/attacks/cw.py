"""`cw`: PGD on the Carlini-Wagner margin loss max_{j!=y} z_j - z_y clamped at kappa = 50, 30 steps of eps/4 from
a uniform random start, Linf or L2 (the CW-inf of robust-KD papers). It is the `pgd` plugin configured, not a copy:
only the defaults differ, and the loss is fixed to the margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rkdbench import hookimpl
from rkdbench_plugins.attacks.pgd import PGD, PGDParams

__all__ = ["CW"]


@dataclass(frozen=True)
class CWParams(PGDParams):  # step_size 0.25 (eps/4), kappa 50, uniform start and one restart are PGD's defaults
    steps: int = 30
    loss: Literal["margin"] = "margin"  # attack `pgd` takes the other losses


class CW(PGD):
    name = "cw"
    Params = CWParams
    display = "CW"
    sanity_rank = None  # another loss than PGD's: no order between the two is guaranteed
    flag_code = ""
    legacy_labels = {"cw": {}}


@hookimpl
def register_attacks(register):
    register(CW)
