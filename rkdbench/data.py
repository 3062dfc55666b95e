"""Dataset splits held as tensors, and batched on-device augmentation (no per-image Python work).

A dataset plugin returns `Splits`: train / validation / test `(x, y)` tensors with x in [0, 1]. The engine
moves them to the device once; `augment` applies the protocol's augmentation to a whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Splits", "AUGMENTATIONS", "augment"]

Pair = tuple[Tensor, Tensor]


@dataclass
class Splits:
    """Fixed train / val / test tensors; `test` is in file order (evaluation takes the first n)."""

    train: Pair
    val: Pair
    test: Pair
    num_classes: int

    def to(self, device: torch.device | str) -> "Splits":
        move = lambda p: (p[0].to(device), p[1].to(device))  # noqa: E731
        return Splits(move(self.train), move(self.val), move(self.test), self.num_classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])


def _pad_crop(x: Tensor, pad: int, generator: torch.Generator | None) -> Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def _flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _strong(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """A batched stand-in for AutoAugment (AdvFunMatch's consistent teaching): a pad-crop of 1/8 of the side,
    per-image contrast and brightness jitter, and a cutout square of 1/4 of the side. No flip: the
    protocol's own augmentation decides whether flipping is label-preserving."""
    b, _, h, w = x.shape
    x = _pad_crop(x, max(1, h // 8), generator)
    shape = (b, 1, 1, 1)
    contrast = 1 + 0.4 * (torch.rand(shape, generator=generator, device=x.device) - 0.5)
    brightness = 0.2 * (torch.rand(shape, generator=generator, device=x.device) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    side = max(1, h // 4)
    top = torch.randint(0, h - side + 1, (b,), generator=generator, device=x.device)
    left = torch.randint(0, w - side + 1, (b,), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    hole = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
    return x.masked_fill(hole, 0.0)


AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "none": lambda x, g: x,
    "pad1-crop": lambda x, g: _pad_crop(x, 1, g),
    "pad4-crop-flip": lambda x, g: _flip(_pad_crop(x, 4, g), g),
    "strong": _strong,
}


def augment(name: str, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Apply the named batched augmentation (see `AUGMENTATIONS`)."""
    return AUGMENTATIONS[name](x, generator)
