"""CIFAR and SVHN fixture files in torchvision's exact on-disk formats (pickled batches), written from images whose
pixels say where they came from: red is the row, green 100 + the column, and two blue pixels carry the image's global
index, so a loader's channel order, layout, file order and splits can be traced. Nothing is downloaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

__all__ = ["images", "rows", "write_pickle", "balanced", "write_cifar10"]


def images(n: int, start: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 HWC images: image i's red plane is row index h, green is 100 + column w, blue is
    random, and pixels (0, 0) / (0, 1) of blue carry the image's global index so splits can be traced."""
    rng = np.random.default_rng(start)
    img = np.empty((n, 32, 32, 3), dtype=np.uint8)
    img[..., 0] = np.arange(32)[None, :, None]
    img[..., 1] = 100 + np.arange(32)[None, None, :]
    img[..., 2] = rng.integers(0, 256, (n, 32, 32))
    ids = np.arange(start, start + n)
    img[:, 0, 0, 2], img[:, 0, 1, 2] = ids % 256, ids // 256
    return img


def rows(img: np.ndarray) -> np.ndarray:
    # CIFAR's row layout, written out independently of the loader: all red, then green, then blue, row-major.
    return np.concatenate([img[..., c].reshape(len(img), -1) for c in range(3)], axis=1)


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def balanced(n: int, classes: int, seed: int) -> np.ndarray:
    """`n` labels, each of the `classes` equally often (up to one), in a seeded random order."""
    return np.random.default_rng(seed).permutation(np.arange(n) % classes)


def write_cifar10(root: Path, per_batch: int = 60, n_test: int = 50, protocol: int = 2) -> dict[str, np.ndarray]:
    """`root/cifar-10-batches-py`: five training batches of `per_batch` images and a test batch of `n_test`, as
    torchvision writes them (pickle `protocol`); the training and test labels and the test images, to compare."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = balanced(5 * per_batch, 10, 0)
    train_images = images(5 * per_batch, 0)
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        batch = {
            b"batch_label": b"training batch",
            b"labels": labels[part].tolist(),
            b"data": rows(train_images[part]),
            b"filenames": [],
        }
        write_pickle(folder / f"data_batch_{b + 1}", batch, protocol)
    test_labels = balanced(n_test, 10, 1)
    test_images = images(n_test, 5 * per_batch)
    write_pickle(folder / "test_batch", {b"labels": test_labels.tolist(), b"data": rows(test_images)}, protocol)
    write_pickle(folder / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]}, protocol)
    return {"train_y": labels, "test_y": test_labels, "test_img": test_images}
