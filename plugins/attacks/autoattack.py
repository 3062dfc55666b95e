"""`autoattack`: Croce & Hein's AutoAttack through the authors' `pyautoattack` package (never the stale
`autoattack` module that torchattacks installs). Versions `standard`, `plus`, `rand`, and `custom` with an
`attacks` list. The inputs and model are checked first (`attack_mode`), and the global torch RNG, which AutoAttack
reseeds, is restored afterwards; per-attack robust accuracies and the package's own checks are captured from its
`auto-attack` logger into `info`. `AutoAttackComponent` is the base of the single-attack plugins (`apgd-ce`,
`apgd-t`, `fab-t`, `square`): one pyautoattack attack run exactly as AutoAttack runs it, the package's check
warnings collected into `info["warnings"]` too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rkdbench import Attack, AttackResult, ConfigError, attack_mode, hookimpl, predict, preserved_rng

__all__ = ["AutoAttackPlugin", "AutoAttackComponent"]

Version = Literal["standard", "plus", "rand", "custom"]
SubAttack = Literal["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
_AFTER = re.compile(r"robust accuracy after (\S+): ([0-9.]+)%")
# Passes per point, EVALUATION.md: one that survives every stage costs ~7,900 forwards and ~1,900 backwards; most
# points that break fall to APGD-CE's 100 iterations
ROBUST_POINT = (7900, 1900)
BROKEN_POINT = (120, 100)


@dataclass(frozen=True)
class AutoAttackParams:
    version: Version = "standard"
    attacks: tuple[SubAttack, ...] = ()  # only with version = "custom"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class AutoAttackPlugin(Attack):
    name = "autoattack"
    Params = AutoAttackParams
    display = "AutoAttack"
    final = True  # the reference evaluation of robust accuracy: leaderboards rank by it
    sanity_rank = 2  # an ensemble that starts with a stronger PGD: never more robust than PGD
    flag_code = "aa"
    legacy_labels = {"aa": {}}  # the built-in protocols' label, and the references' `aa`

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)  # version and attack names are checked against their `Literal` choices there
        if (self.params.version == "custom") != bool(self.params.attacks):
            raise ConfigError("autoattack: give `attacks` exactly when version = 'custom'")

    @classmethod
    def passes_per_point(cls, options: Mapping[str, Any], robust_fraction: float) -> tuple[float, float]:
        return tuple(
            robust_fraction * robust + (1 - robust_fraction) * broken  # type: ignore[return-value]
            for robust, broken in zip(ROBUST_POINT, BROKEN_POINT)
        )

    @classmethod
    def first_stage(cls, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """`standard` runs APGD-T, FAB-T and Square only on the points APGD-CE left robust: APGD-CE alone."""
        if spec.get("version", "standard") == "standard":
            return {"attack": cls.name, "version": "custom", "attacks": ["apgd-ce"]}
        return None

    @classmethod
    def sweep_spec(cls, spec: Mapping[str, Any]) -> dict[str, Any]:
        return {"attack": "apgd-ce"}  # the first stage on its own: strong, cheap, no target classes to choose

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        with attack_mode(model, x, self.batch_size, owner=f"attack {self.name!r}"):
            return self._run_checked(model, x, y)

    def _run_checked(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        from pyautoattack import AutoAttack  # imported late: it is slow to import and only needed here

        p = self.params
        adversary = AutoAttack(
            model,
            attacks=list(p.attacks) or None,
            device=x.device,
            eps=self.threat.eps,
            norm=self.threat.norm,
            seed=self.seed,
            version=p.version,
        )
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
        checks = [r.getMessage() for r in capture.records if r.levelno >= logging.WARNING]
        info = {
            "version": p.version,
            "per_attack": per_attack,
            "warnings": checks,
            "log": [r.getMessage() for r in capture.records],
        }
        return self._result(model, x_adv.detach(), y, info)


@contextlib.contextmanager
def _check_warnings(into: list[str]) -> Iterator[None]:
    """pyautoattack's checks (zero gradients in APGD) use `warnings.warn` when the attack has no logger: collect
    those into `into`, and pass every other warning on unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if Path(warning.filename).parent.name == "pyautoattack":
            into.append(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


class AutoAttackComponent(Attack):
    """One pyautoattack attack run as AutoAttack runs it: only on the clean-correct points, in batches of
    `batch_size`, reseeded with `seed` at every batch, and a point's x_adv replaced only where it is misclassified.
    With the same seed and batch size, `apgd-ce` therefore reproduces AutoAttack's first stage exactly.
    Subclasses build the pyautoattack object (anything with `perturb(x, y) -> x_adv`)."""

    def _adversary(self, model: nn.Module, num_classes: int, device: torch.device) -> Any:
        raise NotImplementedError

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> AttackResult:
        with attack_mode(model, x, self.batch_size, owner=f"attack {self.name!r}"), preserved_rng():
            todo = (predict(model, x, self.batch_size) == y).nonzero().flatten()
            x_adv = x.clone()
            checks: list[str] = []
            if len(todo):
                with torch.no_grad():
                    num_classes = int(model(x[:1]).shape[1])
                adversary = self._adversary(model, num_classes, x.device)
                for start in range(0, len(todo), self.batch_size):
                    idx = todo[start : start + self.batch_size]
                    with _check_warnings(checks):
                        candidate = adversary.perturb(x[idx].clone(), y[idx].clone()).detach()
                    broken = predict(model, candidate, self.batch_size) != y[idx]
                    x_adv[idx[broken]] = candidate[broken]
            info = {"attacked": len(todo), "warnings": list(dict.fromkeys(checks)), **dataclasses.asdict(self.params)}
            return self._result(model, x_adv, y, info)


@hookimpl
def register_attacks(register):
    register(AutoAttackPlugin)
