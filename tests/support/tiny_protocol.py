"""A tiny digits protocol as a file of its own (two epochs, 40 test points, one 2-step PGD attack): for the tests
that predict, calibrate or schedule cells of a protocol whose every number they know, not an override of a
built-in one."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_tiny_protocol"]

TEMPLATE = """
[protocol]
name = "{name}"
version = 1
dataset = "digits"
[threat]
norm = "Linf"
eps = 0.15
[data]
split_seed = 0
augment = "none"
[train]
epochs = 2
batch_size = 128
optimizer = "sgd"
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
schedule = "constant"
val_pgd_steps = 2
{train_extra}[eval]
n_examples = 40
batch_size = 32
seed = 0
selections = ["last"]
[eval.attacks.pgd2]
attack = "pgd"
steps = 2
"""


def write_tiny_protocol(path: Path, name: str, device: str | None = None) -> Path:
    """`path` holding the tiny protocol named `name` (`train.device` set when given); the path."""
    path.write_text(TEMPLATE.format(name=name, train_extra=f'device = "{device}"\n' if device else ""))
    return path
