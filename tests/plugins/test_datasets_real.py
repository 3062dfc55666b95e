"""CIFAR-10/100 and SVHN read from fixture files written in torchvision's exact on-disk formats (pickled batches,
MATLAB v5 files): pixels round-trip exactly with the right channel order and layout, labels and file order
hold, the stratified validation split has the right sizes and depends only on the split seed, and missing or
corrupt files are one-line errors naming the folder or file. Nothing is downloaded."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import rkdbench
from rkdbench.data import default_data_dir, stratified_holdout
from rkdbench.errors import ConfigError
from rkdbench_plugins.datasets.cifar import Cifar10, Cifar100
from rkdbench_plugins.datasets.svhn import SVHN
from support.cifar_files import balanced, images, rows, write_cifar10, write_pickle


def _ids(x: torch.Tensor) -> np.ndarray:
    """Recover each image's global index from its blue pixels (0, 0) and (0, 1)."""
    u8 = (x[:, 2, 0, :2] * 255).round().to(torch.int64).numpy()
    return u8[:, 0] + 256 * u8[:, 1]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_pixels_labels_and_test_order(tmp_path, protocol):
    data = write_cifar10(tmp_path, protocol=protocol)
    splits = Cifar10(val_size=50).load(str(tmp_path), split_seed=0)
    x, y = splits.test
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (50, 3, 32, 32)
    assert splits.num_classes == 10 and splits.input_shape == (3, 32, 32)
    # Channel order RGB and row-major planes: red is the row index, green 100 + the column index.
    h, w = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    assert torch.equal(x[0, 0], h.float() / 255) and torch.equal(x[0, 1], (100 + w).float() / 255)
    # Exactly uint8 / 255 everywhere (IEEE float32 division), and the test set whole in file order.
    expected = data["test_img"].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    assert np.array_equal(x.numpy(), expected)
    assert _ids(x).tolist() == list(range(300, 350)) and y.tolist() == data["test_y"].tolist()


def test_cifar10_split_sizes_stratification_and_labels(tmp_path):
    data = write_cifar10(tmp_path)
    splits = Cifar10(val_size=50).load(str(tmp_path), split_seed=0)
    (x_tr, y_tr), (x_val, y_val) = splits.train, splits.val
    assert len(y_tr) == 250 and len(y_val) == 50
    train_ids, val_ids = _ids(x_tr), _ids(x_val)
    assert set(train_ids).isdisjoint(val_ids) and sorted([*train_ids, *val_ids]) == list(range(300))
    assert list(train_ids) == sorted(train_ids)  # the kept training points stay in file order
    assert y_tr.tolist() == data["train_y"][train_ids].tolist()
    assert y_val.tolist() == data["train_y"][val_ids].tolist()
    assert np.bincount(y_val.numpy(), minlength=10).tolist() == [5] * 10


def test_split_depends_only_on_split_seed(tmp_path):
    write_cifar10(tmp_path)
    load = lambda seed: _ids(Cifar10(val_size=50).load(str(tmp_path), split_seed=seed).val[0]).tolist()  # noqa: E731
    assert load(0) == load(0)
    assert load(0) != load(1)


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine, fine_test = balanced(400, 100, 0), balanced(100, 100, 1)
    write_pickle(
        folder / "train",
        {b"data": rows(images(400, 0)), b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()},
    )
    write_pickle(
        folder / "test",
        {
            b"data": rows(images(100, 400)),
            b"fine_labels": fine_test.tolist(),
            b"coarse_labels": (fine_test // 5).tolist(),
        },
    )
    write_pickle(folder / "meta", {b"fine_label_names": [], b"coarse_label_names": []})
    splits = Cifar100(val_size=100).load(str(tmp_path), split_seed=3)
    assert splits.num_classes == 100 and splits.test[1].tolist() == fine_test.tolist()
    assert np.bincount(splits.val[1].numpy(), minlength=100).tolist() == [1] * 100
    assert splits.train[1].tolist() == fine[_ids(splits.train[0])].tolist()


def _write_svhn(root: Path, n_train: int = 120, n_test: int = 30) -> dict[str, np.ndarray]:
    out = {}
    for split, n, start in (("train", n_train, 0), ("test", n_test, n_train)):
        digits = balanced(n, 10, start)
        img = images(n, start)
        # torchvision's layout: X is (H, W, C, N) and y is (N, 1) with digit 0 stored as 10.
        y = np.where(digits == 0, 10, digits)[:, None].astype(np.uint8)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": img.transpose(1, 2, 3, 0), "y": y})
        out[f"{split}_y"], out[f"{split}_img"] = digits, img
    return out


def test_svhn_layout_labels_and_split(tmp_path):
    data = _write_svhn(tmp_path)
    splits = SVHN(val_size=20).load(str(tmp_path), split_seed=0)
    x, y = splits.test
    assert x.shape == (30, 3, 32, 32) and x.is_contiguous() and y.dtype == torch.int64
    h, w = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    assert torch.equal(x[0, 0], h.float() / 255) and torch.equal(x[0, 1], (100 + w).float() / 255)
    expected = data["test_img"].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    assert np.array_equal(x.numpy(), expected)
    assert y.tolist() == data["test_y"].tolist() and 0 in y.tolist() and 10 not in y.tolist()
    assert _ids(x).tolist() == list(range(120, 150))  # file order
    train_ids, val_ids = _ids(splits.train[0]), _ids(splits.val[0])
    assert len(train_ids) == 100 and len(val_ids) == 20 and set(train_ids).isdisjoint(val_ids)
    assert np.bincount(splits.val[1].numpy(), minlength=10).tolist() == [2] * 10
    assert splits.val[1].tolist() == data["train_y"][val_ids].tolist()


def test_real_size_holdout_is_49000_and_1000_stratified():
    labels = balanced(50_000, 10, 0)
    keep, held = stratified_holdout(labels, 1_000, seed=0)
    assert len(keep) == 49_000 and len(held) == 1_000
    assert np.bincount(labels[held]).tolist() == [100] * 10
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(50_000))
    assert np.array_equal(keep, np.sort(keep)) and np.array_equal(held, np.sort(held))
    fine = balanced(50_000, 100, 0)  # CIFAR-100: 10 per class
    assert np.bincount(fine[stratified_holdout(fine, 1_000, 0)[1]]).tolist() == [10] * 100
    assert np.array_equal(stratified_holdout(labels, 1_000, 0)[1], held)
    assert not np.array_equal(stratified_holdout(labels, 1_000, 1)[1], held)


def test_unbalanced_holdout_hits_the_exact_size():
    labels = np.repeat(np.arange(10), [13_861, 10_585, 8_497, 7_458, 6_882, 5_727, 5_595, 5_045, 4_659, 4_948])
    keep, held = stratified_holdout(labels, 1_000, seed=0)  # SVHN's training class counts
    counts = np.bincount(labels[held])
    assert len(held) == 1_000 and len(keep) == len(labels) - 1_000 and counts.min() > 0
    assert np.all(np.abs(counts - np.bincount(labels) * 1_000 / len(labels)) < 1)


def test_registered_with_the_real_default_sizes():
    assert {"cifar10", "cifar100", "svhn"} <= set(rkdbench.list_components("dataset"))
    for name in ("cifar10", "cifar100", "svhn"):
        assert rkdbench.create("dataset", name).val_size == 1_000
        assert rkdbench.create("dataset", name, val_size=7).val_size == 7
        assert rkdbench.create("dataset", name).input_shape == (3, 32, 32)


@pytest.mark.parametrize(
    "dataset, folder, files",
    [
        (Cifar10(), "cifar-10-batches-py", ["data_batch_1", "data_batch_5", "test_batch"]),
        (Cifar100(), "cifar-100-python", ["train", "test"]),
        (SVHN(), "", ["train_32x32.mat", "test_32x32.mat"]),
    ],
)
def test_missing_data_names_folder_files_and_fetch_command(tmp_path, dataset, folder, files):
    with pytest.raises(ConfigError) as err:
        dataset.load(str(tmp_path / "data"), 0)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "data" / folder) in message and "download=True" in message
    assert all(name in message for name in files) and "torchvision.datasets." in message


def test_default_data_dir_and_root_none(tmp_path, monkeypatch):
    monkeypatch.delenv("RKDBENCH_DATA_DIR", raising=False)
    assert default_data_dir() == Path.home() / ".cache" / "rkdbench" / "data"
    monkeypatch.setenv("RKDBENCH_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    _write_svhn(tmp_path)
    assert len(SVHN(val_size=20).load(None, 0).test[1]) == 30


@pytest.mark.parametrize("content", [b"this is not a pickle", "truncated"])
def test_corrupt_cifar_batch_names_the_file(tmp_path, content):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:5000] if content == "truncated" else content)
    with pytest.raises(ConfigError, match="data_batch_3") as err:
        Cifar10(val_size=50).load(str(tmp_path), 0)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


class _RunsCode:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize("payload", ["list", "wrong-keys", "wrong-shape", "code"])
def test_unexpected_cifar_content_is_refused(tmp_path, payload):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    obj = {
        "list": [1, 2, 3],
        "wrong-keys": {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]},
        "wrong-shape": {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]},
        "code": {b"data": _RunsCode(tmp_path / "pwned"), b"labels": [0]},
    }[payload]
    write_pickle(bad, obj)
    with pytest.raises(ConfigError, match="test_batch"):
        Cifar10(val_size=50).load(str(tmp_path), 0)
    assert not (tmp_path / "pwned").exists()  # the unpickler refused os.mkdir instead of calling it


def test_corrupt_svhn_file_names_the_file(tmp_path):
    _write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage" * 100)
    with pytest.raises(ConfigError, match="test_32x32.mat"):
        SVHN(val_size=20).load(str(tmp_path), 0)
    wrong_dtype = np.zeros((32, 32, 3, 2), np.float64)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": wrong_dtype, "y": [[1], [2]]})
    with pytest.raises(ConfigError, match="is not an SVHN file"):
        SVHN(val_size=20).load(str(tmp_path), 0)


def test_partly_missing_data_names_the_missing_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(ConfigError, match=r"lacks data_batch_4 \(of data_batch_1, .*test_batch\)"):
        Cifar10(val_size=50).load(str(tmp_path), 0)
