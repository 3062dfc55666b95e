"""Published numbers beside reproduced ones: `configs/references.toml` (package data) holds one `[[reference]]`
per published result (the protocol ids it belongs to, method, student, teacher, accuracies in %, provenance tag,
citation, source), and `join_references` gives each matching leaderboard row its reported final-attack (AutoAttack)
accuracy and the difference reproduced − reported. The accuracies are keyed by `clean` and the labels the attack
plugins declare they answered to in the built-in protocols (`AttackTraits.legacy_labels`: `pgd20` is PGD-20, `aa`
AutoAttack), so what a key means, and which one is the final attack's, is the plugins' word, not this module's. A
reference joins only the leaderboards of the protocols it names (not their overridden variants, which run another
budget), and only a row with the same method (default parameters, not a variant), student and teacher.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ..attacks.traits import CLEAN, AttackEntry, final_label, legacy_specs, plugins_of
from ..errors import ConfigError

__all__ = ["Reference", "load_references", "join_references", "default_references_path"]

# Provenance tags as in the method notes: verified, secondary source, recalled, author's code, inferred, unknown
TAG = re.compile(r"[VSRAIU](/[VSRAIU])*")
TEXT = ("protocols", "method", "student", "teacher", "tag", "citation", "source", "note")  # every field but accuracies
REQUIRED = TEXT[:-1]


@dataclass(frozen=True)
class Reference:
    """One published result: accuracies in % by label (`clean` and the attacks' legacy labels) and `final`, the
    label of its final attack's accuracy (the one a leaderboard shows as reported)."""

    protocols: tuple[str, ...]
    method: str
    student: str
    teacher: str
    tag: str
    citation: str
    source: str
    accuracies: dict[str, float] = field(default_factory=dict)
    final: str = ""
    note: str = ""

    @property
    def reported(self) -> float:
        """The published final-attack (AutoAttack) accuracy in %."""
        return self.accuracies[self.final]

    def keys(self) -> list[tuple[str, str, str, str]]:
        return [(protocol, self.method, self.student, self.teacher) for protocol in self.protocols]

    @property
    def provenance(self) -> str:
        return f"[{self.tag}] {self.citation}; {self.source}" + (f" ({self.note})" if self.note else "")


def default_references_path() -> Path:
    return Path(str(resources.files("rkdbench") / "configs" / "references.toml"))


def _reference(where: str, entry: object, attacks: Mapping[str, AttackEntry], plugins: Mapping[str, type]) -> Reference:
    """One `[[reference]]` table, its accuracy keys being `clean` and the labels of `attacks` (`legacy_specs`)."""
    labels = [CLEAN, *attacks]
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    final = final_label([label for label in attacks if label in entry], attacks, plugins)
    finals = [label for label in attacks if final_label([label], attacks, plugins)]
    unknown = sorted(set(entry) - set(TEXT) - set(labels))
    no_final = " or ".join(finals) or "a final attack's accuracy (no registered attack declares itself final)"
    missing = [name for name in REQUIRED if name not in entry] + ([no_final] if final is None else [])
    if unknown or missing:
        raise ConfigError(
            f"{where}: "
            + "; ".join(
                ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            )
            + f"; allowed: {', '.join([*TEXT, *labels])}"
        )
    accuracies: dict[str, Any] = {label: entry[label] for label in labels if label in entry}
    for name, value in accuracies.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise ConfigError(f"{where}: {name} = {value!r} is not allowed; allowed: a number in [0, 100] (percent)")
    if not isinstance(entry["tag"], str) or not TAG.fullmatch(entry["tag"]):
        raise ConfigError(
            f"{where}: tag = {entry['tag']!r} is not allowed; allowed: V, S, R, A, I, U or a combination such as V/S"
        )
    text = [name for name in TEXT[1:] if not isinstance(entry.get(name, ""), str)]
    if text:
        raise ConfigError(f"{where}: {', '.join(text)} must be text")
    protocols = entry["protocols"]
    if not isinstance(protocols, list) or not protocols or not all(isinstance(p, str) and p for p in protocols):
        raise ConfigError(
            f"{where}: protocols = {protocols!r} is not allowed; allowed: a non-empty list of protocol ids"
        )
    return Reference(
        **{name: entry[name] for name in TEXT[1:] if name in entry},
        protocols=tuple(protocols),
        accuracies={label: float(value) for label, value in accuracies.items()},
        final=str(final),
    )


def load_references(path: str | os.PathLike[str] | None = None) -> list[Reference]:
    """The references in `path` (default: the packaged file), validated; two rows with one key are an error."""
    path = Path(path) if path is not None else default_references_path()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"references file {path}: {exc}") from None
    attacks = legacy_specs()
    plugins = plugins_of(attacks)
    references = [
        _reference(f"{path}: reference {i + 1}", entry, attacks, plugins)
        for i, entry in enumerate(data.get("reference", []))
    ]
    seen: dict[tuple[str, str, str, str], int] = {}
    for i, reference in enumerate(references):
        for key in reference.keys():
            if key in seen and seen[key] != i:
                raise ConfigError(
                    f"{path}: references {seen[key] + 1} and {i + 1} are both for {' / '.join(key)}; keep one"
                )
            seen[key] = i
    return references


def join_references(
    frame: pd.DataFrame, experiment: str, references: list[Reference], aa_label: str | None
) -> list[Reference]:
    """Add `reported_aa`, `reported_tag`, `reported_source` and `delta_aa` to `frame` (rows keyed by method_variant,
    student, teacher) from the references of protocol `experiment`, and return the ones that matched; with none,
    `frame` is left as it is."""
    by_key = {key: reference for reference in references for key in reference.keys() if key[0] == experiment}
    matched = [
        by_key.get((experiment, *key)) for key in zip(frame["method_variant"], frame["student"], frame["teacher"])
    ]
    if aa_label is None or not any(matched):
        return []
    frame["reported_aa"] = [r.reported if r else float("nan") for r in matched]
    frame["reported_tag"] = [r.tag if r else "" for r in matched]
    frame["reported_source"] = [r.provenance if r else "" for r in matched]
    frame["delta_aa"] = frame[f"{aa_label}_mean"] - frame["reported_aa"]
    return [r for r in matched if r]
