"""`autoattack`: Croce & Hein's AutoAttack through the authors' `pyautoattack` package (never the stale
`autoattack` module that torchattacks installs). Versions `standard`, `plus`, `rand`, and `custom` with an
`attacks` list. The global torch RNG, which AutoAttack reseeds, is restored afterwards; per-attack robust
accuracies and the package's own checks are captured from its `auto-attack` logger into `info`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from torch import Tensor, nn

from rkdbench import hookimpl
from rkdbench.attacks import Attack, preserved_rng
from rkdbench.contracts import AttackResult
from rkdbench.errors import ConfigError

__all__ = ["AutoAttackPlugin"]

VERSIONS = ("standard", "plus", "rand", "custom")
SUB_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_AFTER = re.compile(r"robust accuracy after (\S+): ([0-9.]+)%")


@dataclass(frozen=True)
class AutoAttackParams:
    version: str = "standard"
    attacks: tuple[str, ...] = ()  # only with version = "custom"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class AutoAttackPlugin(Attack):
    name = "autoattack"
    Params = AutoAttackParams

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        p = self.params
        if p.version not in VERSIONS:
            raise ConfigError(f"autoattack version {p.version!r} is not allowed; allowed: {', '.join(VERSIONS)}")
        if (p.version == "custom") != bool(p.attacks):
            raise ConfigError("autoattack: give `attacks` exactly when version = 'custom'")
        unknown = [a for a in p.attacks if a not in SUB_ATTACKS]
        if unknown:
            raise ConfigError(f"autoattack attacks {unknown} are not allowed; allowed: {', '.join(SUB_ATTACKS)}")

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        from pyautoattack import AutoAttack  # imported late: it is slow to import and only needed here

        p = self.params
        adversary = AutoAttack(model, attacks=list(p.attacks) or None, device=x.device, eps=self.threat.eps,
                               norm=self.threat.norm, seed=self.seed, version=p.version)
        logger = logging.getLogger("auto-attack")
        capture, old_level = _Capture(), logger.level
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
        try:
            with preserved_rng():
                x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=self.batch_size)
        finally:
            logger.removeHandler(capture)
            logger.setLevel(old_level)
        per_attack = {}
        for record in capture.records:
            match = _AFTER.search(record.getMessage())
            if match:
                per_attack[match.group(1).lower()] = float(match.group(2)) / 100
        warnings = [r.getMessage() for r in capture.records if r.levelno >= logging.WARNING]
        info = {"version": p.version, "per_attack": per_attack, "warnings": warnings,
                "log": [r.getMessage() for r in capture.records]}
        return self._result(model, x_adv.detach(), y, info)


@hookimpl
def register_attacks(register):
    register(AutoAttackPlugin)
