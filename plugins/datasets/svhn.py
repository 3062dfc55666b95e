"""`svhn` (Street View House Numbers, 32x32 RGB digits, 10 classes) read from a local folder in torchvision's
layout, without importing torchvision.

`root` (the protocol's `data_root`, else `default_data_dir()`) holds `train_32x32.mat` and `test_32x32.mat`,
the MATLAB v5 files `torchvision.datasets.SVHN(root, split=..., download=True)` leaves: `X` is uint8
(32, 32, 3, N) and `y` is (N, 1) with digit 0 stored as label 10. The split is fixed: the 73,257 training
images minus a 1,000-image validation split stratified by label and drawn by `split_seed` alone, and the
26,032 test images whole and in file order, as RobustBench evaluates the first n. The `extra` split is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from rkdbench import ConfigError, HeldOutDataset, Splits, hookimpl, require_files, uint8_splits

__all__ = ["SVHN"]

_EXPECTED = "a MATLAB v5 file with X (uint8, 32 x 32 x 3 x N) and y (N x 1 labels in 1..10)"


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # whatever scipy trips on, the file is corrupt, truncated or foreign
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"cannot read SVHN file {path}: {reason}; delete it and fetch it again") from exc
    x, y = mat.get("X"), np.asarray(mat.get("y"))
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == np.uint8
        and x.ndim == 4
        and x.shape[:3] == (32, 32, 3)
        and x.shape[3] > 0
        and y.size == x.shape[3]
        and np.issubdtype(y.dtype, np.integer)
        and 1 <= y.min()
        and y.max() <= 10
    ):
        raise ConfigError(f"{path} is not an SVHN file: expected {_EXPECTED}")
    # (H, W, C, N) -> (N, C, H, W); a view here, made contiguous once when converted to float.
    labels = y.reshape(-1).astype(np.int64) % 10  # SVHN stores digit 0 as label 10
    return x.transpose(3, 2, 0, 1), labels


class SVHN(HeldOutDataset):
    name = "svhn"
    num_classes = 10
    input_shape = (3, 32, 32)
    split_sizes = (72_257, 1_000, 26_032)  # train, validation, test of the real files (cost estimates)

    def load(self, root: str | None = None, split_seed: int = 0) -> Splits:
        base = self.data_dir(root)
        fetch = (
            'python -c "import torchvision; '
            + "; ".join(
                f"torchvision.datasets.SVHN({str(base)!r}, split={split!r}, download=True)"
                for split in ("train", "test")
            )
            + '"'
        )
        train_path, test_path = require_files(base, ["train_32x32.mat", "test_32x32.mat"], fetch)
        return uint8_splits(_read(train_path), _read(test_path), self.num_classes, self.val_size, split_seed)


@hookimpl
def register_datasets(register):
    register(SVHN)
