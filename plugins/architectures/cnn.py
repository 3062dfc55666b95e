"""Small CNNs for the embedded 8x8 `digits` data: two students and the larger harness-built teacher.

All three share one shape (conv-BN-ReLU stages, a max-pool after the second stage, global average pooling,
a linear head) so the student-specialization diagnostic can pair their stages; widths set the size.
`cnn-tiny` ~6k parameters, `cnn-small` ~24k, `cnn-large` ~94k.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rkdbench import hookimpl

__all__ = ["DigitsCNN", "cnn_tiny", "cnn_small", "cnn_large"]


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DigitsCNN(nn.Module):
    """conv stages of the given widths (pool after the second), global average pool, linear classifier."""

    def __init__(self, widths: tuple[int, ...], num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers.append(_stage(c_in, width))
            if i == 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def cnn_tiny(num_classes: int = 10, in_channels: int = 1) -> DigitsCNN:
    return DigitsCNN((8, 16, 32), num_classes, in_channels)


def cnn_small(num_classes: int = 10, in_channels: int = 1) -> DigitsCNN:
    return DigitsCNN((16, 32, 64), num_classes, in_channels)


def cnn_large(num_classes: int = 10, in_channels: int = 1) -> DigitsCNN:
    return DigitsCNN((32, 64, 128), num_classes, in_channels)


@hookimpl
def register_architectures(register):
    register(cnn_tiny, name="cnn-tiny")
    register(cnn_small, name="cnn-small")
    register(cnn_large, name="cnn-large")
