"""`cifar10` and `cifar100` (32x32 RGB; 10 classes, and CIFAR-100's 100 fine classes) read from a local folder
in torchvision's python layout, without importing torchvision.

`root` (the protocol's `data_root`, else `default_data_dir()`) holds `cifar-10-batches-py/` and
`cifar-100-python/`, exactly what `torchvision.datasets.CIFAR10/CIFAR100(root, download=True)` leaves. The
split is fixed: the 50,000 training images minus a 1,000-image validation split stratified by label and drawn
by `split_seed` alone (49,000 train), and the 10,000 test images whole and in file order, as RobustBench
evaluates the first n. The batches are Python pickles because that is the format the dataset itself ships in
and these are the user's own downloaded copies; even so they are read with an unpickler that refuses every
global except numpy's array reconstruction (a tampered file cannot run code), and anything that is not the
expected dict of uint8 rows and labels is refused with the file's name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from rkdbench import ConfigError, HeldOutDataset, Splits, hookimpl, require_files, uint8_splits

__all__ = ["Cifar10", "Cifar100"]

# What a pickled uint8 ndarray needs, under numpy 1 (`numpy.core`) and 2 (`numpy._core`) and pickle
# protocols 2 (`_codecs.encode` for the raw bytes) to 5 (`_frombuffer`); nothing else may be imported.
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to import {module}.{name}; a CIFAR batch holds only arrays")


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            # encoding="bytes": the batches were pickled by Python 2, whose str keys come back as b"data" etc.
            return _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # whatever the decoder trips on, the file is corrupt, truncated or foreign
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"cannot read CIFAR batch {path}: {reason}; delete it and fetch the dataset again") from exc


class _CifarPickles(HeldOutDataset):
    """One CIFAR variant: where its files live and which label key it uses."""

    name: str
    num_classes: int
    input_shape = (3, 32, 32)
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: bytes
    torchvision_class: str
    split_sizes = (49_000, 1_000, 10_000)  # train, validation, test of the real files (cost estimates)

    def load(self, root: str | None = None, split_seed: int = 0) -> Splits:
        base = self.data_dir(root)
        fetch = (
            f'python -c "import torchvision; torchvision.datasets.{self.torchvision_class}({str(base)!r}, '
            f'download=True)"'
        )
        *train_paths, test_path = require_files(base / self.folder, [*self.train_files, self.test_file], fetch)
        batches = [self._read(p) for p in train_paths]
        train = (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]))
        return uint8_splits(train, self._read(test_path), self.num_classes, self.val_size, split_seed)

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        batch = _unpickle(path)
        expected = (
            f"a pickled dict with b'data' (uint8, N x 3072) and {self.label_key!r} (N labels in "
            f"0..{self.num_classes - 1})"
        )
        if not isinstance(batch, dict) or b"data" not in batch or self.label_key not in batch:
            raise ConfigError(f"{path} is not a {self.name} batch: expected {expected}")
        data, labels = batch[b"data"], np.asarray(batch[self.label_key])
        if not (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32
            and len(data) > 0
            and labels.shape == (len(data),)
            and np.issubdtype(labels.dtype, np.integer)
            and 0 <= labels.min()
            and labels.max() < self.num_classes
        ):
            raise ConfigError(f"{path} is not a {self.name} batch: expected {expected}")
        # Each row is the red, green and blue 32x32 planes in turn, each row-major: a reshape gives NCHW.
        return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


class Cifar10(_CifarPickles):
    name = "cifar10"
    num_classes = 10
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file = "test_batch"
    label_key = b"labels"
    torchvision_class = "CIFAR10"


class Cifar100(_CifarPickles):
    name = "cifar100"
    num_classes = 100
    folder = "cifar-100-python"
    train_files = ("train",)
    test_file = "test"
    label_key = b"fine_labels"  # the 100-class labels; b"coarse_labels" are the 20 superclasses
    torchvision_class = "CIFAR100"


@hookimpl
def register_datasets(register):
    register(Cifar10)
    register(Cifar100)
