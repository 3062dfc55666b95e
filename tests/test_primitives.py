"""The PGD primitive, batched augmentation, atomic checkpoints and the digits split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rkdbench
from rkdbench.attacks.pgd import pgd, project
from rkdbench.data import augment
from rkdbench.training.checkpoint import CheckpointError, load_verified, save_atomic


@pytest.mark.parametrize("norm, init", [("Linf", "uniform"), ("Linf", "gauss"), ("L2", "uniform")])
def test_pgd_stays_in_the_ball_and_the_box_and_increases_the_objective(norm, init):
    torch.manual_seed(0)
    model = rkdbench.create("architecture", "cnn-tiny").eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    eps = 0.1 if norm == "Linf" else 0.5
    objective = lambda xa: F.cross_entropy(model(xa), y, reduction="none")  # noqa: E731
    x_adv = pgd(objective, x, eps=eps, step_size=eps / 4, steps=10, norm=norm, init=init)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-6).all()) and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert float(objective(x_adv).sum()) > float(objective(x).sum())


def test_pgd_uses_the_given_generator_only():
    model = rkdbench.create("architecture", "cnn-tiny").eval()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    objective = lambda xa: F.cross_entropy(model(xa), y, reduction="none")  # noqa: E731
    state = torch.get_rng_state()
    a = pgd(objective, x, eps=0.1, step_size=0.025, steps=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    b = pgd(objective, x, eps=0.1, step_size=0.025, steps=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_project_clips_linf():
    x = torch.full((1, 1, 2, 2), 0.5)
    out = project(x + torch.tensor([0.3, -0.3, 0.05, 0.6]).view(1, 1, 2, 2), x, 0.1, "Linf")
    assert out.flatten().tolist() == pytest.approx([0.6, 0.4, 0.55, 0.6])


def test_pad_crop_flip_is_batched_and_shape_preserving():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = augment("pad4-crop-flip", x, g)
    assert out.shape == x.shape
    assert torch.equal(augment("none", x), x)
    # with pad 0 offsets the crop is the identity, so every output pixel comes from the padded input
    values = set(x.flatten().tolist()) | {0.0}
    assert set(out.flatten().tolist()) <= values


def test_checkpoint_is_atomic_verified_and_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    digest = save_atomic({"w": torch.ones(2)}, path)
    assert load_verified(path)["w"].tolist() == [1.0, 1.0]
    assert (tmp_path / "c.pt.sha256").read_text().split()[0] == digest
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match="sha256"):
        load_verified(path)
    html = tmp_path / "h.pt"
    html.write_text("<!DOCTYPE html><html>Google Drive</html>")
    with pytest.raises(CheckpointError, match="HTML page"):
        load_verified(html)


def test_digits_split_is_fixed_stratified_and_in_range():
    splits = rkdbench.create("dataset", "digits").load(None, 0)
    assert [len(s[1]) for s in (splits.train, splits.val, splits.test)] == [1257, 180, 360]
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 10
    assert float(splits.train[0].min()) >= 0 and float(splits.train[0].max()) <= 1
    again = rkdbench.create("dataset", "digits").load(None, 0)
    assert torch.equal(splits.test[0], again.test[0])
    assert torch.bincount(splits.test[1]).min() >= 35  # stratified: every class present in proportion
