"""Loading a teacher: the checkpoint(s) of its card from the model dir, sha256-checked and read with
`weights_only=True`, into its registered architecture; `{'state_dict': ...}` or bare dicts, `module.`/`model.`
prefixes stripped, the load strict; an ensemble's members' logits averaged. The result is frozen, in eval mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import sha256_file
from ..errors import MissingTeacherError
from ..training.checkpoint import CheckpointError, load_verified
from .card import TeacherCard
from .model_dir import _expected_sha256, _record_first_use, member_paths, missing_teacher_message

__all__ = ["state_dict_of", "load_weights", "LogitEnsemble", "load_teacher"]


def state_dict_of(checkpoint: Any) -> dict[str, Any]:
    """The weights in a loaded checkpoint: `{'state_dict': ...}`, `{'model': ...}` (rkdbench's own) or a bare
    state dict, with a `module.` (DataParallel) or `model.` prefix stripped."""
    state = checkpoint
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    for prefix in ("module.", "model."):
        if isinstance(state, dict) and state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, checkpoint: Any, source: str) -> None:
    """Strict `load_state_dict` of a loaded checkpoint (see `state_dict_of`); a mismatch is one `CheckpointError`
    line counting missing, unexpected and wrongly shaped keys, with the first of each."""
    state = state_dict_of(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict")
    expected = model.state_dict()
    problems = {
        # BatchNorm fills a missing `num_batches_tracked` itself (checkpoints from before PyTorch 0.4.1 lack it)
        "missing": [k for k in expected if k not in state and not k.endswith("num_batches_tracked")],
        "unexpected": [k for k in state if k not in expected],
        "wrongly shaped": [
            k for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)
        ],
    }
    found = [f"{len(keys)} {kind} key(s) (first: {keys[0]})" for kind, keys in problems.items() if keys]
    if found:
        raise CheckpointError(f"{source} does not fit the {type(model).__name__} model: {'; '.join(found)}")
    model.load_state_dict(state, strict=True)


class LogitEnsemble(nn.Module):
    """RobustBench-style ensemble: the members' logits averaged (members share one architecture)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.models]).mean(0)


def load_teacher(card: TeacherCard, model_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """The teacher as a frozen module in eval mode, after the sha256 check (recorded on first use)."""
    from ..plugins import create

    folder = Path(model_dir)
    members, digests, unverified = [], [], False
    for i, path in enumerate(member_paths(card, folder)):
        if not path.is_file():
            raise MissingTeacherError(missing_teacher_message(card, path))
        expected = _expected_sha256(card, folder, i)
        unverified |= expected is None
        state = load_verified(path, expected_sha256=expected, map_location="cpu")
        model = create(
            "architecture",
            card.architecture,
            num_classes=card.num_classes,
            in_channels=card.in_channels,
            **card.arch_kwargs,
        )
        load_weights(model, state, f"teacher {card.name!r}: checkpoint {path}")
        members.append(model)
        digests.append(expected or sha256_file(path))
    if unverified:
        _record_first_use(card, folder, digests)
    model = LogitEnsemble(members) if card.ensemble else members[0]
    return model.to(device).eval().requires_grad_(False)
