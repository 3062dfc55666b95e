"""Published numbers beside reproduced ones: `configs/references.toml` (package data) holds one `[[reference]]`
per published result (the protocol ids it belongs to, method, student, teacher, accuracies in %, provenance tag,
citation, source), and `join_references` gives each matching leaderboard row its reported AutoAttack accuracy
and the difference reproduced − reported. A reference joins only the leaderboards of the protocols it names
(not their overridden variants, which run another budget), and only a row with the same method (default
parameters, not a variant), student and teacher.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import ConfigError

__all__ = ["Reference", "load_references", "join_references", "default_references_path"]

# Provenance tags as in the method notes: verified, secondary source, recalled, author's code, inferred, unknown
TAG = re.compile(r"[VSRAIU](/[VSRAIU])*")


@dataclass(frozen=True)
class Reference:
    """One published result; accuracies in % (None when the paper gives none)."""

    protocols: tuple[str, ...]
    method: str
    student: str
    teacher: str
    aa: float
    tag: str
    citation: str
    source: str
    clean: float | None = None
    pgd20: float | None = None
    note: str = ""

    def keys(self) -> list[tuple[str, str, str, str]]:
        return [(protocol, self.method, self.student, self.teacher) for protocol in self.protocols]

    @property
    def provenance(self) -> str:
        return f"[{self.tag}] {self.citation}; {self.source}" + (f" ({self.note})" if self.note else "")


def default_references_path() -> Path:
    return Path(str(resources.files("rkdbench") / "configs" / "references.toml"))


def _reference(where: str, entry: object) -> Reference:
    known = {f.name: f for f in fields(Reference)}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(entry) - set(known))
    missing = sorted(name for name, f in known.items() if f.default is MISSING and name not in entry)
    if unknown or missing:
        raise ConfigError(
            f"{where}: "
            + "; ".join(
                ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            )
            + f"; allowed: {', '.join(known)}"
        )
    for name in ("aa", "clean", "pgd20"):
        value = entry.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100
        ):
            raise ConfigError(f"{where}: {name} = {value!r} is not allowed; allowed: a number in [0, 100] (percent)")
    if not isinstance(entry["tag"], str) or not TAG.fullmatch(entry["tag"]):
        raise ConfigError(
            f"{where}: tag = {entry['tag']!r} is not allowed; allowed: V, S, R, A, I, U or a combination such as V/S"
        )
    text = [
        name
        for name in ("method", "student", "teacher", "citation", "source", "note")
        if not isinstance(entry.get(name, ""), str)
    ]
    if text:
        raise ConfigError(f"{where}: {', '.join(text)} must be text")
    protocols = entry["protocols"]
    if not isinstance(protocols, list) or not protocols or not all(isinstance(p, str) and p for p in protocols):
        raise ConfigError(
            f"{where}: protocols = {protocols!r} is not allowed; allowed: a non-empty list of protocol ids"
        )
    return Reference(
        **{
            k: float(v) if k in ("aa", "clean", "pgd20") else tuple(v) if k == "protocols" else v
            for k, v in entry.items()
        }
    )


def load_references(path: str | os.PathLike[str] | None = None) -> list[Reference]:
    """The references in `path` (default: the packaged file), validated; two rows with one key are an error."""
    path = Path(path) if path is not None else default_references_path()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"references file {path}: {exc}") from None
    references = [_reference(f"{path}: reference {i + 1}", entry) for i, entry in enumerate(data.get("reference", []))]
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
    frame["reported_aa"] = [r.aa if r else float("nan") for r in matched]
    frame["reported_tag"] = [r.tag if r else "" for r in matched]
    frame["reported_source"] = [r.provenance if r else "" for r in matched]
    frame["delta_aa"] = frame[f"{aa_label}_mean"] - frame["reported_aa"]
    return [r for r in matched if r]
