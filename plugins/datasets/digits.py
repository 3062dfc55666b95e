"""scikit-learn's bundled `digits` (1,797 8x8 grey images, 10 classes), offline, scaled to [0, 1].

The split is fixed and stratified: 20% test (360 images), 10% of the total for validation (180), the rest
(1,257) for training. It depends only on `split_seed`, never on the training seed.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from rkdbench import Splits, hookimpl

__all__ = ["Digits"]


class Digits:
    name = "digits"
    num_classes = 10
    input_shape = (1, 8, 8)
    split_sizes = (1257, 180, 360)  # train, validation, test

    def load(self, root: str | None = None, split_seed: int = 0) -> Splits:
        bunch = load_digits()
        x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
        y = bunch.target.astype(np.int64)
        idx = np.arange(len(y))
        rest, test = train_test_split(idx, test_size=360, stratify=y, random_state=split_seed)
        train, val = train_test_split(rest, test_size=180, stratify=y[rest], random_state=split_seed)
        test = np.sort(test)  # file order, as RobustBench takes the first n test points

        def take(ix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.from_numpy(x[ix]), torch.from_numpy(y[ix])

        return Splits(train=take(train), val=take(val), test=take(test), num_classes=self.num_classes)


@hookimpl
def register_datasets(register):
    register(Digits)
