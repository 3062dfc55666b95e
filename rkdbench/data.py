"""Dataset splits held as tensors, and batched on-device augmentation (no per-image Python work).

A dataset plugin returns `Splits`: train / validation / test `(x, y)` tensors with x in [0, 1]. The engine
moves them to the device once; `augment` applies the protocol's augmentation to a whole batch at once.
Plugins that read files share `default_data_dir`, `require_files`, `stratified_holdout` and `uint8_splits`, so
every file-backed dataset splits, converts and reports missing data the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError

__all__ = [
    "Splits",
    "SealedSplit",
    "HeldOutDataset",
    "AUGMENTATIONS",
    "augment",
    "load_splits",
    "default_data_dir",
    "require_files",
    "stratified_holdout",
    "uint8_splits",
]

Pair = tuple[Tensor, Tensor]


class SealedSplit:
    """A split that must not be read (the test split while tuning): any use of it raises, naming why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def _refuse(self, *_: Any) -> Any:
        raise RuntimeError(f"the test split is sealed: {self.why}")

    __getitem__ = __iter__ = __len__ = _refuse


@dataclass
class Splits:
    """Fixed train / val / test tensors; `test` is in file order (evaluation takes the first n), or sealed."""

    train: Pair
    val: Pair
    test: Pair | SealedSplit
    num_classes: int

    def to(self, device: torch.device | str) -> Splits:
        move = lambda p: p if isinstance(p, SealedSplit) else (p[0].to(device), p[1].to(device))  # noqa: E731
        return Splits(move(self.train), move(self.val), move(self.test), self.num_classes)

    def sealed(self) -> Splits:
        """These splits without the test split: a tuning trial selects on validation only (`rkdbench tune`)."""
        return Splits(
            self.train, self.val, SealedSplit("a tuning trial reads only train and validation"), self.num_classes
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])


def default_data_dir() -> Path:
    """Where file-backed datasets look when the protocol names no `data_root`."""
    return Path(os.environ.get("RKDBENCH_DATA_DIR", Path.home() / ".cache" / "rkdbench" / "data")).expanduser()


class HeldOutDataset:
    """Base of file-backed datasets: the validation split is `val_size` stratified points held out of the
    training files (1,000 for the real files; a constructor argument so tests can use small fixtures), and
    files are looked up under `root`, else `default_data_dir()`."""

    val_size = 1_000

    def __init__(self, val_size: int | None = None) -> None:
        if val_size is not None:
            self.val_size = val_size

    @staticmethod
    def data_dir(root: str | None) -> Path:
        return Path(root).expanduser() if root else default_data_dir()


def load_splits(protocol: Any, data_dir: str | os.PathLike[str] | None = None) -> Splits:
    """The protocol's dataset split by its `split_seed`, read from the protocol's `data_root`, else `data_dir`
    (the `--data-dir` option), else the dataset's default (`default_data_dir()` for file-backed ones)."""
    from .plugins import get_registry

    dataset = get_registry().get("dataset", protocol.header.dataset).instantiate()
    root = protocol.header.data_root or (None if data_dir is None else str(data_dir))
    return dataset.load(root, protocol.inputs.split_seed)


def require_files(folder: Path, names: Sequence[str], fetch: str) -> list[Path]:
    """Return `folder/name` for each name, or raise one `ConfigError` line listing what is missing and the
    command (`fetch`) that downloads it on a machine with a network: no test or run ever downloads."""
    paths = [folder / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        expected = ", ".join(names)
        lacks = (
            f"has none of {expected}" if len(missing) == len(names) else f"lacks {', '.join(missing)} (of {expected})"
        )
        raise ConfigError(
            f"dataset files not found: {folder} {lacks}; fetch them on a machine with a network "
            f"with: {fetch} (or point data_root / $RKDBENCH_DATA_DIR at a folder that has them)"
        )
    return paths


def stratified_holdout(labels: np.ndarray, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out), both sorted, holding out `n_holdout` points in proportion to each
    class's count. Quotas are exact integer shares with the remainder going to the classes with the largest
    fractional share (ties to the lower label), so 50,000 balanced CIFAR-10 labels give exactly 100 per class;
    which points are held out depends only on `seed` (a numpy Generator), never on the training seed."""
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 < n_holdout < n:
        raise ConfigError(f"cannot hold out {n_holdout} of {n} points; allowed: 1 to {n - 1}")
    classes, counts = np.unique(labels, return_counts=True)
    quota, remainder = np.divmod(counts.astype(np.int64) * n_holdout, n)
    quota[np.argsort(-remainder, kind="stable")[: n_holdout - int(quota.sum())]] += 1
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    for cls, k in zip(classes, quota):
        held[rng.permutation(np.flatnonzero(labels == cls))[:k]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _to_unit(x: np.ndarray) -> Tensor:
    # One C-ordered float32 copy (SVHN arrives as a transposed view), divided in place: exactly uint8 / 255
    # (IEEE division), with no float64 intermediate.
    out = x.astype(np.float32, order="C")
    out /= 255.0
    return torch.from_numpy(out)


def uint8_splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    n_val: int,
    split_seed: int,
) -> Splits:
    """`Splits` from uint8 NCHW images and integer labels: a stratified `n_val` validation split held out of
    `train` (by `split_seed`), the test set kept whole and in file order. Images stay uint8 until each split
    is converted once, so CIFAR's train split costs one float32 copy (~600 MB), not several."""
    (x_train, y_train), (x_test, y_test) = train, test
    keep, val = stratified_holdout(y_train, n_val, split_seed)

    def pair(x: np.ndarray, y: np.ndarray) -> Pair:
        return _to_unit(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    return Splits(
        train=pair(x_train[keep], y_train[keep]),
        val=pair(x_train[val], y_train[val]),
        test=pair(x_test, y_test),
        num_classes=num_classes,
    )


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
