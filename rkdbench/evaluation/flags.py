"""Flags that say an evaluation should not be trusted as it stands: short stable codes computed from the
metrics and attack infos of one evaluation (`sanity_flags`) and from a robust-accuracy-vs-eps sweep
(`eps_flags`). A flag is a reason to look, not a verdict: gradient masking, a randomized or softmax model, or
a too-weak white-box attack are the usual causes. Codes compare accuracies with `>`/`<` (`aa>pgd`: the
AutoAttack accuracy is above the PGD one) or name the pyautoattack check that fired (`aa-warning:<check>`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..attacks.traits import CLEAN, AttackEntry, attack_plugins, plugins_of, sanity_pairs
from ..tracking.schema import metric_key

__all__ = [
    "WARNING_CODES",
    "FLAG_TAGS",
    "sanity_flags",
    "warning_flags",
    "eps_flags",
    "black_box_attacks",
    "join_flags",
]

# The run tag (after the `rkdbench.` prefix) holding each checkpoint selection's flags, comma-separated
FLAG_TAGS = {"last": "flags", "best-val": "best_val.flags", "swa": "swa.flags"}

# pyautoattack's checks (`pyautoattack.checks`) log free text; a fragment of each message -> a stable code.
WARNING_CODES = (
    ("randomized defense", "randomized"),
    ("probability distribution", "softmax"),
    ("zero gradient", "zero-grad"),
    ("Square Attack has decreased", "square"),
    ("dynamic defense", "dynamic"),
    ("target classes", "n-classes"),
    ("not possible to use the", "n-classes"),
)
# pyautoattack's own margin in `check_square_sr`: a black-box attack has to win by more than this to be flagged
BLACK_BOX_MARGIN = 0.002
# Random starts move a robust accuracy by a point or so between eps values; a rise beyond this is flagged
EPS_TOLERANCE = 0.01


def _unique(codes: list[str]) -> list[str]:
    return list(dict.fromkeys(codes))


def warning_flags(infos: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """`aa-warning:<check>` for every pyautoattack check warning found in the attacks' `info["warnings"]`."""
    codes = []
    for info in infos.values():
        for message in info.get("warnings", []):
            code = next((code for fragment, code in WARNING_CODES if fragment in message), "other")
            codes.append(f"aa-warning:{code}")
    return _unique(codes)


def black_box_attacks() -> frozenset[str]:
    """Names of the registered attacks that declare themselves black-box (`AttackTraits.black_box`)."""
    from ..plugins import get_registry

    registry = get_registry()
    return frozenset(name for name, plugin in attack_plugins(registry.names("attack")).items() if plugin.black_box)


def sanity_flags(
    metrics: Mapping[str, float],
    specs: Mapping[str, AttackEntry],
    infos: Mapping[str, Mapping[str, Any]],
    black_box: Collection[str] | None = None,
    plugins: Mapping[str, type] | None = None,
) -> list[str]:
    """Flags of one evaluation: pyautoattack's check warnings, accuracies out of the order the attacks declare
    (`sanity_rank`: for the built-ins `aa>pgd`, `pgd>clean`, `aa>clean`, any label of the stronger attack against
    any of the weaker), and a black-box attack beating every white-box one by more than pyautoattack's margin
    (`black-box<white-box`). `metrics` holds `clean_acc` and `<label>_acc`; `specs` is `[eval.attacks]`;
    `black_box` defaults to the registered black-box attacks, `plugins` (name -> class) to the registered ones."""
    black_box = black_box_attacks() if black_box is None else frozenset(black_box)
    plugins = plugins_of(specs) if plugins is None else plugins
    accuracy = {label: metrics[metric_key(None, label)] for label in specs if metric_key(None, label) in metrics}

    def of(attack: str) -> list[float]:
        if attack == CLEAN:
            return [metrics[metric_key(None, CLEAN)]] if metric_key(None, CLEAN) in metrics else []
        return [acc for label, acc in accuracy.items() if specs[label].attack == attack]

    flags = warning_flags(infos)
    flags += [
        code
        for strong, weak, code in sanity_pairs(specs, plugins)
        if of(strong) and of(weak) and max(of(strong)) > min(of(weak))
    ]
    black = [acc for label, acc in accuracy.items() if specs[label].attack in black_box]
    white = [acc for label, acc in accuracy.items() if specs[label].attack not in black_box]
    if black and white and min(black) < min(white) - BLACK_BOX_MARGIN:
        flags.append("black-box<white-box")
    return _unique(flags)


def eps_flags(accuracies: Mapping[float, float], tolerance: float = EPS_TOLERANCE) -> list[str]:
    """Flags of a robust-accuracy-vs-eps sweep (`{eps or multiplier: accuracy}`): `eps-nonmonotonic` when the
    accuracy rises by more than `tolerance` from one eps to a larger one, `eps-flat` when the largest eps leaves
    as many points robust as the smallest (and some are), both classic signs of gradient masking."""
    if len(accuracies) < 2:
        return []
    values = [accuracies[eps] for eps in sorted(accuracies)]
    flags = []
    lowest = [min(values[: i + 1]) for i in range(len(values))]
    if any(later > low + tolerance for low, later in zip(lowest, values[1:])):  # many small rises add up
        flags.append("eps-nonmonotonic")
    if values[0] > 0 and values[-1] >= values[0] - tolerance:
        flags.append("eps-flat")
    return flags


def join_flags(flags: list[str]) -> str:
    """The tag value: codes joined by commas, the empty string when there are none."""
    return ",".join(dict.fromkeys(flags))
