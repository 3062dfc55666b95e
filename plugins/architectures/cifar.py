"""CIFAR networks (inputs in [0,1]) whose state-dict keys are spelled as in RobustBench's model zoo, so its
checkpoints load strictly: kuangliu's ResNet-18/34 and PreActResNet-18 (RobustBench's `ResNet`, `PreActResNet`),
the Madry/TRADES `WideResNet` (with TRADES' never-run `sub_block1` as an option: Zhang2019Theoretically's
checkpoint carries its weights), DeepMind's Swish `DMWideResNet` and `DMPreActResNet` (Gowal2020Uncovering,
Rebuffi2021Fixing; they normalize inside with `mean`/`std` buffers, the others read raw [0,1] input), and
kuangliu's CIFAR MobileNetV2 as a small student. Parameters at 10 classes: resnet-18 11,173,962, resnet-34
21,282,122, preact-resnet-18 11,172,170 (11,171,146 without `bn_before_fc`), preact-resnet-18-swish 12,548,426,
wrn-28-10 36,479,194, wrn-34-10 46,160,474 (48,262,586 with `sub_block1`), wrn-34-20 184,531,674, wrn-70-16
266,796,506, dm-wrn-28-10 36,479,194, dm-wrn-70-16 266,796,506, mobilenet-v2 2,296,922. Every net also has
`features` (its stages) and `classifier` (its head), views without state-dict keys that the specialization
diagnostic reads to pair teacher and student stages.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rkdbench import ConfigError, hookimpl

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CifarNet",
    "BasicBlock",
    "PreActSpelling",
    "PreActBlock",
    "InvertedResidual",
    "ResNet",
    "PreActResNet",
    "DMPreActResNet",
    "WideResNet",
    "DMWideResNet",
    "MobileNetV2",
]

# DeepMind's defaults for the normalization buffers; a loaded checkpoint brings its own values.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)

Activation = Callable[[], nn.Module]
ACTIVATIONS: dict[str, Activation] = {"relu": partial(nn.ReLU, inplace=True), "swish": nn.SiLU}


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if padding is None else padding, bias=False)


def _activation(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _stack(
    block: Callable[[int, int, int], nn.Module],
    c_in: int,
    widths: Sequence[int],
    depths: Sequence[int],
    strides: Sequence[int],
) -> list[nn.Sequential]:
    """One Sequential of blocks per stage; the first block of a stage changes the width and the stride, as in
    every family here."""
    stages = []
    for width, depth, stride in zip(widths, depths, strides):
        stages.append(
            nn.Sequential(*(block(c_in if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)))
        )
        c_in = width
    return stages


def _resnet_stages(block: Callable[[int, int, int], nn.Module], depths: Sequence[int]) -> list[nn.Sequential]:
    """The four stages every ResNet here shares after its 64-channel stem: 64, 128, 256, 512 wide."""
    return _stack(block, 64, (64, 128, 256, 512), depths, (1, 2, 2, 2))


class CifarNet(nn.Module):
    """Runs the modules named in `trunk` in order, global-average-pools, and applies the `head` module; a net
    with `mean`/`std` buffers (DeepMind's) normalizes its input first.

    `features` and `classifier` are read-only views for `rkdbench.diagnostics.specialization.stage_outputs` (the modules
    named in `stage_names`, and the head): properties, so they add no state-dict keys.
    """

    trunk: tuple[str, ...]
    stage_names: tuple[str, ...]
    head: str
    mean: Tensor  # buffers, only on the nets that normalize
    std: Tensor

    def _normalize_with(self, mean: Sequence[float] | float, std: Sequence[float] | float, in_channels: int) -> None:
        for name, value in (("mean", mean), ("std", std)):
            values = [float(value)] * in_channels if isinstance(value, (int, float)) else [float(v) for v in value]
            if len(values) != in_channels:
                raise ConfigError(f"{name} has {len(values)} values for {in_channels} input channels")
            # not persistent: RobustBench's DeepMind checkpoints do not store them (the dataset's statistics come
            # from the teacher card), so a persistent buffer would make their strict load fail
            self.register_buffer(name, torch.tensor(values).view(in_channels, 1, 1), persistent=False)

    def _add_stages(self, names: Sequence[str], stages: Sequence[nn.Module]) -> None:
        self.stage_names = tuple(names)
        for name, stage in zip(names, stages, strict=True):
            self.add_module(name, stage)

    def forward(self, x: Tensor) -> Tensor:
        if "mean" in self._buffers:
            x = (x - self.mean) / self.std
        for name in self.trunk:
            x = getattr(self, name)(x)
        # Global pooling equals the references' fixed avg_pool2d(4 or 8) on 32x32 and also serves other sizes.
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    @property
    def features(self) -> nn.Sequential:
        # Sequential names may not contain dots: "layer.0" is shown as "layer_0".
        return nn.Sequential(
            OrderedDict((name.replace(".", "_"), self.get_submodule(name)) for name in self.stage_names)
        )

    @property
    def classifier(self) -> nn.Module:
        return self.get_submodule(self.head)


class BasicBlock(nn.Module):
    """The post-activation block of kuangliu's CIFAR ResNet (RobustBench's `BasicBlock`)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        # An empty Sequential is the identity; a projection is stored as `shortcut.0` (conv), `shortcut.1` (BN).
        projects = stride != 1 or c_in != c_out
        self.shortcut = (
            nn.Sequential(_conv(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out)) if projects else nn.Sequential()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@dataclass(frozen=True)
class PreActSpelling:
    """How one checkpoint family names the parts of its pre-activation block, and where its maths differs.

    The Madry/TRADES WRN block, DeepMind's WRN and PreAct blocks and RobustBench's PreActBlock(V2) all compute
    conv1(act1(norm1(conv0(act0(norm0(x)))))) + shortcut; only names and these switches tell them apart.
    """

    norm0: str
    act0: str
    conv0: str
    norm1: str
    act1: str
    conv1: str
    shortcut: str
    shortcut_kernel: int = 1
    shortcut_in_sequential: bool = False  # RobustBench's PreActBlock stores it as `shortcut.0.weight`
    shortcut_reads_activation: bool = True  # project act0(norm0(x)) rather than x
    tf_same_padding: bool = False  # DeepMind ported TF's "SAME": pad (0, 1, 0, 1) before a stride-2 conv


MADRY_WRN = PreActSpelling("bn1", "relu1", "conv1", "bn2", "relu2", "conv2", "convShortcut")
DM_WRN = PreActSpelling(
    "batchnorm_0", "relu_0", "conv_0", "batchnorm_1", "relu_1", "conv_1", "shortcut", tf_same_padding=True
)
ROBUSTBENCH_PREACT = PreActSpelling(
    "bn1",
    "relu1",
    "conv1",
    "bn2",
    "relu2",
    "conv2",
    "shortcut",
    shortcut_in_sequential=True,
    shortcut_reads_activation=False,
)
DM_PREACT = PreActSpelling(
    "batchnorm_0",
    "relu_0",
    "conv_2d_1",
    "batchnorm_1",
    "relu_1",
    "conv_2d_2",
    "shortcut",
    shortcut_kernel=3,
    shortcut_reads_activation=False,
    tf_same_padding=True,
)


class PreActBlock(nn.Module):
    """A pre-activation residual block with the part names and variant switches of `spelling`."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, spelling: PreActSpelling, act: Activation) -> None:
        super().__init__()
        self.spelling = spelling
        self.stride = stride
        pad = 0 if spelling.tf_same_padding else None  # TF padding is applied by hand in forward
        self.add_module(spelling.norm0, nn.BatchNorm2d(c_in))
        self.add_module(spelling.act0, act())
        self.add_module(spelling.conv0, _conv(c_in, c_out, 3, stride, pad))
        self.add_module(spelling.norm1, nn.BatchNorm2d(c_out))
        self.add_module(spelling.act1, act())
        self.add_module(spelling.conv1, _conv(c_out, c_out))
        self.projects = stride != 1 or c_in != c_out
        if self.projects:
            shortcut = _conv(c_in, c_out, spelling.shortcut_kernel, stride, pad)
            self.add_module(spelling.shortcut, nn.Sequential(shortcut) if spelling.shortcut_in_sequential else shortcut)

    def _pad(self, x: Tensor) -> Tensor:
        if not self.spelling.tf_same_padding:
            return x
        return F.pad(x, (1, 1, 1, 1) if self.stride == 1 else (0, 1, 0, 1))

    def forward(self, x: Tensor) -> Tensor:
        s = self.spelling
        a = getattr(self, s.act0)(getattr(self, s.norm0)(x))
        out = getattr(self, s.conv0)(self._pad(a))
        out = getattr(self, s.conv1)(getattr(self, s.act1)(getattr(self, s.norm1)(out)))
        if not self.projects:
            return out + x
        source = a if s.shortcut_reads_activation else x
        return out + getattr(self, s.shortcut)(self._pad(source) if s.shortcut_kernel == 3 else source)


class BlockGroup(nn.Module):
    """A stage held under one attribute: `layer` in the Madry/TRADES WRN, `block` in DeepMind's."""

    def __init__(self, attribute: str, blocks: nn.Sequential) -> None:
        super().__init__()
        self.attribute = attribute
        self.add_module(attribute, blocks)

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.attribute)(x)


class InvertedResidual(nn.Module):
    """kuangliu's MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection; residual at stride 1
    (through a 1x1 conv + BN when the width changes, as in that code)."""

    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * c_in
        self.conv1 = _conv(c_in, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = _conv(hidden, c_out, 1)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.residual = stride == 1
        projects = self.residual and c_in != c_out
        self.shortcut = nn.Sequential(_conv(c_in, c_out, 1), nn.BatchNorm2d(c_out)) if projects else nn.Sequential()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        return out + self.shortcut(x) if self.residual else out


class ResNet(CifarNet):
    """kuangliu's CIFAR ResNet (RobustBench's `ResNet`): 3x3 stride-1 stem, no max-pool, four stages, `linear`."""

    def __init__(self, depths: Sequence[int], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self._add_stages(("layer1", "layer2", "layer3", "layer4"), _resnet_stages(BasicBlock, depths))
        self.linear = nn.Linear(512, num_classes)
        self.trunk, self.head = ("conv1", "bn1", "relu", *self.stage_names), "linear"


class PreActResNet(CifarNet):
    """RobustBench's `PreActResNet`: `bn_before_fc` adds the final `bn` + ReLU that robust-training code (Rice et
    al., Addepalli et al.) uses, so it is on by default here, while RobustBench's `PreActResNet18()` (e.g.
    Andriushchenko2020Understanding) needs `bn_before_fc=False`; `shortcut_reads_activation` is its
    `PreActBlockV2` (the projection reads relu(bn1(x)) instead of x)."""

    def __init__(
        self,
        depths: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        bn_before_fc: bool = True,
        shortcut_reads_activation: bool = False,
    ) -> None:
        super().__init__()
        spelling = replace(ROBUSTBENCH_PREACT, shortcut_reads_activation=shortcut_reads_activation)
        block = partial(PreActBlock, spelling=spelling, act=ACTIVATIONS["relu"])
        self.conv1 = _conv(in_channels, 64)
        self._add_stages(("layer1", "layer2", "layer3", "layer4"), _resnet_stages(block, depths))
        final: tuple[str, ...] = ()
        if bn_before_fc:
            self.bn = nn.BatchNorm2d(512)
            self.relu = nn.ReLU(inplace=True)
            final = ("bn", "relu")
        self.linear = nn.Linear(512, num_classes)
        self.trunk, self.head = ("conv1", *self.stage_names, *final), "linear"


class DMPreActResNet(CifarNet):
    """DeepMind's PreActResNet (RobustBench's `DMPreActResNet`): normalizes inside, TF padding, 3x3 projections."""

    def __init__(
        self,
        depths: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        activation: str = "swish",
        mean: Sequence[float] | float = CIFAR10_MEAN,
        std: Sequence[float] | float = CIFAR10_STD,
    ) -> None:
        super().__init__()
        act = _activation(activation)
        self._normalize_with(mean, std, in_channels)
        self.conv_2d = _conv(in_channels, 64)
        block = partial(PreActBlock, spelling=DM_PREACT, act=act)
        self._add_stages(("layer_0", "layer_1", "layer_2", "layer_3"), _resnet_stages(block, depths))
        self.batchnorm = nn.BatchNorm2d(512)
        self.relu = act()
        self.logits = nn.Linear(512, num_classes)
        self.trunk, self.head = ("conv_2d", *self.stage_names, "batchnorm", "relu"), "logits"


def _wrn_shape(depth: int, widen_factor: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Stage widths and blocks per stage of a WRN-depth-k: 16k, 32k, 64k wide, (depth - 4) / 6 blocks each."""
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"WideResNet depth {depth} is not 6n + 4 (e.g. 28, 34, 70)")
    return (16 * widen_factor, 32 * widen_factor, 64 * widen_factor), ((depth - 4) // 6,) * 3


class WideResNet(CifarNet):
    """The Madry/TRADES WideResNet (RobustBench's `WideResNet`); `sub_block1` builds TRADES' extra first-stage
    group, which the forward pass never runs but whose weights some checkpoints (Zhang2019Theoretically) carry."""

    def __init__(
        self,
        depth: int = 34,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        sub_block1: bool = False,
    ) -> None:
        super().__init__()
        widths, depths = _wrn_shape(depth, widen_factor)
        block = partial(PreActBlock, spelling=MADRY_WRN, act=ACTIVATIONS["relu"])
        self.conv1 = _conv(in_channels, 16)
        self._add_stages(
            ("block1", "block2", "block3"),
            [BlockGroup("layer", stage) for stage in _stack(block, 16, widths, depths, (1, 2, 2))],
        )
        if sub_block1:
            self.sub_block1 = BlockGroup("layer", _stack(block, 16, widths[:1], depths[:1], (1,))[0])
        self.bn1 = nn.BatchNorm2d(widths[-1])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.trunk, self.head = ("conv1", *self.stage_names, "bn1", "relu"), "fc"
        # TRADES' initialization (BatchNorm's default already is): He-normal fan-out convolutions, zero fc bias.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)


class DMWideResNet(CifarNet):
    """DeepMind's WideResNet (RobustBench's `DMWideResNet`): normalizes inside, TF padding, Swish by default."""

    def __init__(
        self,
        depth: int = 28,
        width: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        activation: str = "swish",
        mean: Sequence[float] | float = CIFAR10_MEAN,
        std: Sequence[float] | float = CIFAR10_STD,
    ) -> None:
        super().__init__()
        widths, depths = _wrn_shape(depth, width)
        act = _activation(activation)
        self._normalize_with(mean, std, in_channels)
        self.init_conv = _conv(in_channels, 16)
        block = partial(PreActBlock, spelling=DM_WRN, act=act)
        self.layer = nn.Sequential(
            *(BlockGroup("block", stage) for stage in _stack(block, 16, widths, depths, (1, 2, 2)))
        )
        self.batchnorm = nn.BatchNorm2d(widths[-1])
        self.relu = act()
        self.logits = nn.Linear(widths[-1], num_classes)
        self.stage_names = ("layer.0", "layer.1", "layer.2")
        self.trunk, self.head = ("init_conv", "layer", "batchnorm", "relu"), "logits"


class MobileNetV2(CifarNet):
    """kuangliu's CIFAR MobileNetV2: stride 1 in the stem and the second group so 32x32 inputs end at 4x4."""

    # (expansion, width, blocks, stride of the first block) per group
    GROUPS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, 32)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        blocks, strides, c_in = [], [], 32
        for expansion, width, count, stride in self.GROUPS:
            for i in range(count):
                strides.append(stride if i == 0 else 1)
                blocks.append(InvertedResidual(c_in, width, expansion, strides[-1]))
                c_in = width
        self.layers = nn.Sequential(*blocks)
        self.conv2 = _conv(c_in, 1280, 1)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)
        # A stage per resolution: the last block before each downsampling, and the last block.
        ends = [i - 1 for i, stride in enumerate(strides) if stride == 2 and i > 0] + [len(blocks) - 1]
        self.stage_names = tuple(f"layers.{i}" for i in ends)
        self.trunk, self.head = ("conv1", "bn1", "relu", "layers", "conv2", "bn2", "relu"), "linear"


@hookimpl
def register_architectures(register):
    register(partial(ResNet, (2, 2, 2, 2)), name="resnet-18")
    register(partial(ResNet, (3, 4, 6, 3)), name="resnet-34")
    register(partial(PreActResNet, (2, 2, 2, 2)), name="preact-resnet-18")
    register(partial(DMPreActResNet, (2, 2, 2, 2)), name="preact-resnet-18-swish")
    for depth, widen in ((28, 10), (34, 10), (34, 20), (70, 16)):
        register(partial(WideResNet, depth, widen), name=f"wrn-{depth}-{widen}")
    for depth, width in ((28, 10), (70, 16)):
        register(partial(DMWideResNet, depth, width), name=f"dm-wrn-{depth}-{width}")
    register(MobileNetV2, name="mobilenet-v2")
