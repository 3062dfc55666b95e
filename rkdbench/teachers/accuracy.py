"""A teacher's own measured accuracy, for the leaderboard's `AA gap to teacher`. Only a measurement under the
students' evaluation counts: the same protocol hash, or the same evaluation key (the `protocol.dataset`, `data`,
`threat` and `eval` fields, which fix the test points, threat model and attacks; training fields cannot change a
fixed teacher's accuracy, so `rkdbench evaluate TEACHER --protocol P` also serves a suite that overrode P's
budget). Sources, in this order: FINISHED `evaluation` runs of the teacher in the store, newest first, then the
teacher's measured card in the model dir (`evaluations.<protocol hash>`, written by `rkdbench evaluate`). A
quoted number (the card's `reported`) is never used: it was measured under someone else's evaluation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..tracking import Tracker, schema

__all__ = ["TeacherAccuracies", "evaluation_key", "teacher_accuracies"]

EVALUATION_FIELDS = ("protocol.protocol.dataset", "protocol.data.", "protocol.threat.", "protocol.eval.")
# Which checkpoints of a student are evaluated, and extra diagnostics, change no attack's numbers
IGNORED_FIELDS = frozenset({"protocol.eval.selections", "protocol.eval.diagnostics"})


def evaluation_key(params: Mapping[str, Any]) -> str | None:
    """Hash of the evaluation fields among `protocol.<table>.<field>` params, compared as the text MLflow stores;
    None when there are none (a run logged without params matches by protocol hash only)."""
    from ..config import canonical_hash  # the config module loads the attack plugins' contract (torch)

    relevant = {
        k: schema.param_text(v)
        for k, v in params.items()
        if k.startswith(EVALUATION_FIELDS)
        and k not in IGNORED_FIELDS
        and v is not None
        and not (isinstance(v, float) and math.isnan(v))
    }
    return canonical_hash(relevant) if relevant else None


@dataclass
class TeacherAccuracies:
    """Measured teacher accuracies (in %), each as (teacher, protocol hash, evaluation key, {label: accuracy})."""

    measured: list[tuple[str, str, str | None, dict[str, float]]] = field(default_factory=list)

    def find(self, teacher: str, protocol_hash: str, key: str | None, label: str) -> float | None:
        for name, measured_hash, measured_key, accuracies in self.measured:
            same = measured_hash == protocol_hash or (key is not None and measured_key == key)
            if name == teacher and same and label in accuracies:
                return accuracies[label]
        return None


def _accuracies(values: Mapping[str, Any], split: str) -> dict[str, float]:
    """label -> accuracy in % of the numbers under `split` ("" for a card's); stages count as `<label>.<stage>`."""
    keys = {name: schema.parse_metric_key(name) for name, value in values.items() if isinstance(value, (int, float))}
    return {
        key.label + (f".{key.stage}" if key.stage else ""): 100 * float(values[name])
        for name, key in keys.items()
        if key is not None and key.split == split and key.kind == schema.ACC and not key.worst_class
    }


def _from_store(tracker: Tracker) -> list[tuple[str, str, str | None, dict[str, float]]]:
    runs = tracker.search_runs(schema.finished_evaluations(), order_by=schema.NEWEST_FIRST)
    return [
        (
            run.data.tags[schema.TEACHER],
            run.data.tags.get(schema.PROTOCOL_HASH, ""),
            evaluation_key(run.data.params),
            _accuracies(run.data.metrics, schema.selection_split("last")),
        )
        for run in runs
        if schema.TEACHER in run.data.tags
    ]


def _card_key(protocol_hash: str, entry: Mapping[str, Any]) -> str | None:
    """The evaluation key of a card entry, when its protocol still resolves to the recorded hash."""
    from ..config import load_protocol

    try:
        protocol = load_protocol(str(entry.get("protocol", "")), dict(entry.get("protocol_overrides") or {}))
    except (UserError, TypeError, ValueError):  # a protocol file that moved or changed: exact hash only
        return None
    if protocol.hash != protocol_hash:
        return None
    return evaluation_key(schema.protocol_params(protocol.data))


def _from_cards(
    teachers: Iterable[str], model_dir: str | os.PathLike[str]
) -> list[tuple[str, str, str | None, dict[str, float]]]:
    from ..plugins import get_registry
    from .model_dir import read_measured_card

    measured = []
    for name in sorted(set(teachers)):
        try:
            card = read_measured_card(get_registry().get("teacher", name).obj, model_dir)
        except (UserError, OSError, ValueError):  # not a registered teacher, or an unreadable card: no number
            continue
        for protocol_hash, entry in sorted(((card or {}).get("evaluations") or {}).items()):
            measured.append((name, protocol_hash, _card_key(protocol_hash, entry), _accuracies(entry, "")))
    return measured


def teacher_accuracies(
    tracker: Tracker | None = None, teachers: Iterable[str] = (), model_dir: str | os.PathLike[str] | None = None
) -> TeacherAccuracies:
    """Every measurement the store (evaluation runs) and the model dir (cards of `teachers`) hold."""
    measured = _from_store(tracker) if tracker is not None else []
    if model_dir is not None:
        measured += _from_cards(teachers, model_dir)
    return TeacherAccuracies(measured)
