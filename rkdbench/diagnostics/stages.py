"""The stages of a network that student specialization compares: which module outputs (or inputs) stand for
a layer of units, found from the architecture (`features` blocks with an activation and the classifier's input;
timm's `feature_info`) or named explicitly, and how a teacher's stages pair with a student's (from the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError, close_matches

__all__ = ["Stage", "stage_outputs", "pair_stages", "INPUT_SUFFIX"]

INPUT_SUFFIX = ":input"  # a stage name ending in this reads the module's input (the penultimate features)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)


@dataclass(frozen=True)
class Stage:
    """One place activations are read: `module`'s output, or its first input when `read_input`."""

    name: str
    module: nn.Module
    read_input: bool = False


def stage_outputs(model: nn.Module, names: Sequence[str] | None = None) -> list[Stage]:
    """The stages of `model`, shallow to deep.

    Default: every top-level block of `model.features` that contains an activation (its output is
    post-activation; pooling and other parameter-free glue between blocks are skipped), then the input of
    `model.classifier` (the penultimate features, after pooling and flattening); for timm models, the modules
    of their `feature_info` and the input of their classifier. `names` overrides this with
    dotted module names from `model.named_modules()`; a name ending in ":input" reads that module's input.
    """
    if names is not None:
        modules = dict(model.named_modules())
        return [_named_stage(modules, name) for name in names]
    stages: list[Stage] = []
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        stages += [
            Stage(f"features.{name}", block) for name, block in features.named_children() if _has_activation(block)
        ]
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Module):
        stages.append(Stage("classifier" + INPUT_SUFFIX, classifier, read_input=True))
    if not stages:
        stages = _timm_stages(model)
    if not stages:
        raise ConfigError(
            f"{type(model).__name__} has no `features` blocks or `classifier`; pass the stage names explicitly"
        )
    return stages


def _timm_stages(model: nn.Module) -> list[Stage]:
    """timm models: the modules their `feature_info` lists (the outputs timm's own feature extraction returns,
    shallow to deep), then the input of `get_classifier()`; [] for anything else."""
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not all(isinstance(i, dict) and "module" in i for i in info):
        return []
    modules = dict(model.named_modules())
    stages = [Stage(i["module"], modules[i["module"]]) for i in info if i["module"] in modules]
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    name = next((n for n, m in modules.items() if m is head and n), None)
    if name is not None and not isinstance(head, nn.Identity):
        stages.append(Stage(name + INPUT_SUFFIX, head, read_input=True))
    return stages


def _has_activation(block: nn.Module) -> bool:
    return any(isinstance(m, ACTIVATIONS) for m in block.modules())


def _named_stage(modules: dict[str, nn.Module], name: str) -> Stage:
    read_input = name.endswith(INPUT_SUFFIX)
    key = name[: -len(INPUT_SUFFIX)] if read_input else name
    if key not in modules:
        raise ConfigError(f"no module named {key!r}{close_matches(key, [n for n in modules if n])}")
    return Stage(name, modules[key], read_input)


def pair_stages(teacher_stages: Sequence[Stage], student_stages: Sequence[Stage]) -> list[tuple[Stage, Stage]]:
    """Pair by position from the end (last with last), dropping the extra shallow stages of the deeper list."""
    n = min(len(teacher_stages), len(student_stages))
    return list(zip(teacher_stages[len(teacher_stages) - n :], student_stages[len(student_stages) - n :]))
