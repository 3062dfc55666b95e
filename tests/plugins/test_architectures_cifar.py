"""The CIFAR architectures and the `timm:` bridge: exact parameter counts, output shapes on 32x32 inputs, state
dicts spelled as in RobustBench's checkpoints loading strictly (key sets written out here from RobustBench's
sources, independently of the plugin's code), the specialization diagnostic finding their stages, and the
timm bridge's CIFAR stem and one-line errors. The large nets are only built on the meta device."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

import rkdbench
from rkdbench.diagnostics.specialization import specialization, stage_outputs
from rkdbench.errors import ConfigError, UnknownComponentError
from rkdbench.teachers.load import load_weights
from rkdbench.training.checkpoint import CheckpointError
from rkdbench_plugins.architectures import cifar

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# At 10 classes unless a num_classes is given; computed once and cross-checked against published sizes
# (kuangliu ResNet-18 11,173,962; TRADES WRN-34-10 46.16M; WRN-28-10 36.48M; Rebuffi's R18 12.5M).
PARAMETERS = [
    ("resnet-18", {}, 11_173_962),
    ("resnet-18", {"num_classes": 100}, 11_220_132),
    ("resnet-34", {}, 21_282_122),
    ("preact-resnet-18", {}, 11_172_170),
    ("preact-resnet-18", {"bn_before_fc": False}, 11_171_146),
    ("preact-resnet-18-swish", {}, 12_548_426),
    ("wrn-28-10", {}, 36_479_194),
    ("wrn-34-10", {}, 46_160_474),
    ("wrn-34-10", {"sub_block1": True}, 48_262_586),
    ("wrn-34-20", {}, 184_531_674),
    ("wrn-70-16", {}, 266_796_506),
    ("dm-wrn-28-10", {}, 36_479_194),
    ("dm-wrn-70-16", {}, 266_796_506),
    ("mobilenet-v2", {}, 2_296_922),
]


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return rkdbench.create("architecture", name, **kwargs)


def _bn(prefix: str) -> set[str]:
    return {f"{prefix}.{suffix}" for suffix in BN}


def _checkpoint_like(model: torch.nn.Module, keys: set[str]) -> dict[str, torch.Tensor]:
    """A state dict with exactly `keys`, shaped like the model's tensors (random values on CPU models)."""
    state = model.state_dict()
    return {k: torch.randn_like(state[k]) if state[k].is_floating_point() else state[k].clone() for k in keys}


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    PARAMETERS,
    ids=[f"{n}-{'-'.join(map(str, kw.values())) or 'default'}" for n, kw, _ in PARAMETERS],
)
def test_exact_parameter_counts(name, kwargs, expected):
    assert sum(p.numel() for p in _meta(name, **kwargs).parameters()) == expected


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet-18", {}),
        ("preact-resnet-18", {"num_classes": 100}),
        ("preact-resnet-18", {"bn_before_fc": False, "shortcut_reads_activation": True}),
        ("preact-resnet-18-swish", {}),
        ("mobilenet-v2", {"num_classes": 7}),
    ],
)
def test_forward_on_cifar_batch(name, kwargs):
    torch.manual_seed(0)
    model = rkdbench.create("architecture", name, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, kwargs.get("num_classes", 10)) and torch.isfinite(out).all()


@pytest.mark.parametrize("cls", [cifar.WideResNet, cifar.DMWideResNet])
def test_wide_resnets_forward_at_small_size(cls):
    """The registered WRNs are too big for a CPU test; a WRN-16-2 runs the same blocks (incl. TF padding)."""
    model = cls(
        16, 2, num_classes=10, in_channels=1, **({"mean": 0.5, "std": 0.25} if cls is cifar.DMWideResNet else {})
    )
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 10)


def _resnet_keys(depths: tuple[int, ...]) -> set[str]:
    """kuangliu / RobustBench `ResNet(BasicBlock, depths)`."""
    keys = {"conv1.weight", "linear.weight", "linear.bias"} | _bn("bn1")
    for stage, depth in enumerate(depths, start=1):
        for i in range(depth):
            p = f"layer{stage}.{i}"
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight"} | _bn(f"{p}.bn1") | _bn(f"{p}.bn2")
            if i == 0 and stage > 1:
                keys |= {f"{p}.shortcut.0.weight"} | _bn(f"{p}.shortcut.1")
    return keys


def _block_keys(prefix: str, norm0: str, conv0: str, norm1: str, conv1: str, shortcut: str | None) -> set[str]:
    """One pre-activation block: two BNs, two convs, and the projection when it has one."""
    keys = (
        {f"{prefix}.{conv0}.weight", f"{prefix}.{conv1}.weight"} | _bn(f"{prefix}.{norm0}") | _bn(f"{prefix}.{norm1}")
    )
    return keys | ({f"{prefix}.{shortcut}"} if shortcut else set())


def _wrn_keys(depth: int, *, dm: bool, sub_block1: bool = False) -> set[str]:
    """RobustBench `WideResNet(depth, widen_factor, sub_block1=...)` (TRADES' code) or `DMWideResNet(depth=...)`."""
    if dm:
        keys = {"init_conv.weight", "logits.weight", "logits.bias"} | _bn("batchnorm")  # mean/std: not persistent
        groups = [f"layer.{g}.block" for g in range(3)]
        names = ("batchnorm_0", "conv_0", "batchnorm_1", "conv_1", "shortcut.weight")
    else:
        keys = {"conv1.weight", "fc.weight", "fc.bias"} | _bn("bn1")
        groups = [f"{g}.layer" for g in ["block1", "block2", "block3"] + (["sub_block1"] if sub_block1 else [])]
        names = ("bn1", "conv1", "bn2", "conv2", "convShortcut.weight")
    for group in groups:
        for i in range((depth - 4) // 6):  # every group's first block widens the net, so it projects
            keys |= _block_keys(f"{group}.{i}", *names[:4], names[4] if i == 0 else None)
    return keys


def _preact_keys(dm: bool) -> set[str]:
    """RobustBench `PreActResNet(PreActBlock, [2, 2, 2, 2], bn_before_fc=True)`, or `DMPreActResNet(depth=18)`."""
    if dm:
        keys = {"conv_2d.weight", "logits.weight", "logits.bias"} | _bn("batchnorm")
        layers = [f"layer_{i}" for i in range(4)]
        names = ("batchnorm_0", "conv_2d_1", "batchnorm_1", "conv_2d_2", "shortcut.weight")
    else:
        keys = {"conv1.weight", "linear.weight", "linear.bias"} | _bn("bn")
        layers = [f"layer{i}" for i in range(1, 5)]
        names = ("bn1", "conv1", "bn2", "conv2", "shortcut.0.weight")
    for stage, layer in enumerate(layers):
        for i in range(2):  # the first block of stages 2-4 halves the resolution, so it projects
            keys |= _block_keys(f"{layer}.{i}", *names[:4], names[4] if i == 0 and stage > 0 else None)
    return keys


@pytest.mark.parametrize(
    ("name", "kwargs", "keys", "literal"),
    [
        (
            "resnet-18",
            {},
            _resnet_keys((2, 2, 2, 2)),
            {
                "layer2.0.shortcut.0.weight": (128, 64, 1, 1),
                "layer4.1.bn2.running_var": (512,),
                "linear.weight": (10, 512),
            },
        ),
        ("resnet-34", {}, _resnet_keys((3, 4, 6, 3)), {"layer3.5.conv2.weight": (256, 256, 3, 3)}),
        (
            "wrn-34-10",
            {"sub_block1": True},
            _wrn_keys(34, dm=False, sub_block1=True),
            {
                "sub_block1.layer.0.conv1.weight": (160, 16, 3, 3),
                "block3.layer.0.convShortcut.weight": (640, 320, 1, 1),
                "fc.weight": (10, 640),
            },
        ),
        ("wrn-28-10", {}, _wrn_keys(28, dm=False), {"block2.layer.3.conv2.weight": (320, 320, 3, 3)}),
        (
            "preact-resnet-18",
            {},
            _preact_keys(dm=False),
            {"bn.weight": (512,), "layer2.0.shortcut.0.weight": (128, 64, 1, 1)},
        ),
        (
            "preact-resnet-18-swish",
            {},
            _preact_keys(dm=True),
            {"layer_1.0.shortcut.weight": (128, 64, 3, 3), "logits.weight": (10, 512)},
        ),
        (
            "dm-wrn-28-10",
            {},
            _wrn_keys(28, dm=True),
            {
                "init_conv.weight": (16, 3, 3, 3),
                "layer.1.block.0.shortcut.weight": (320, 160, 1, 1),
                "logits.weight": (10, 640),
            },
        ),
        ("dm-wrn-70-16", {}, _wrn_keys(70, dm=True), {"layer.2.block.10.conv_1.weight": (1024, 1024, 3, 3)}),
    ],
)
def test_robustbench_spelled_state_dict_loads_strictly(name, kwargs, keys, literal):
    model = _meta(name, **kwargs)
    state = model.state_dict()
    assert set(state) == keys
    assert {k: tuple(state[k].shape) for k in literal} == literal
    load_weights(model, {"state_dict": _checkpoint_like(model, keys)}, "test checkpoint")
    missing = sorted(keys)[0]
    with pytest.raises(CheckpointError, match=rf"1 missing key\(s\) \(first: {missing}\)"):
        load_weights(model, _checkpoint_like(model, keys - {missing}), "test checkpoint")


def test_real_resnet18_checkpoint_loads_and_predicts():
    """pyautoattack's wheel ships a kuangliu CIFAR-10 ResNet-18 state dict: the real thing, offline."""
    import pyautoattack

    path = os.path.join(os.path.dirname(pyautoattack.__file__), "examples", "model_test.pt")
    if not os.path.isfile(path):
        pytest.skip("this pyautoattack wheel has no examples/model_test.pt")
    model = rkdbench.create("architecture", "resnet-18")
    load_weights(model, torch.load(path, map_location="cpu", weights_only=True), path)
    torch.manual_seed(0)
    with torch.no_grad():
        probs = model.eval()(torch.rand(4, 3, 32, 32)).softmax(1)
    assert probs.shape == (4, 10) and torch.allclose(probs.sum(1), torch.ones(4))


def test_dm_nets_normalize_with_their_buffers():
    model = rkdbench.create("architecture", "preact-resnet-18-swish", mean=0.0, std=1.0).eval()
    # buffers that move with .to(), but not in the state dict: RobustBench's DeepMind checkpoints lack them
    assert {"mean", "std"} <= dict(model.named_buffers()).keys() and not {"mean", "std"} & model.state_dict().keys()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        model.mean.fill_(0.5)
        model.std.fill_(0.25)
        assert not torch.allclose(model(x), plain)  # the buffers are applied, not decoration
        assert torch.allclose(model(0.5 + 0.25 * x), plain, atol=1e-5)
    with pytest.raises(ConfigError, match="mean has 3 values for 1 input channels"):
        rkdbench.create("architecture", "dm-wrn-28-10", in_channels=1)
    with pytest.raises(ConfigError, match="unknown activation 'gelu'; allowed: relu, swish"):
        rkdbench.create("architecture", "dm-wrn-28-10", activation="gelu")


def test_specialization_pairs_cifar_stages():
    teacher, student = rkdbench.create("architecture", "resnet-18"), rkdbench.create("architecture", "mobilenet-v2")
    assert [s.name for s in stage_outputs(teacher)] == [f"features.layer{i}" for i in range(1, 5)] + [
        "classifier:input"
    ]
    assert [s.name for s in stage_outputs(_meta("wrn-34-10", sub_block1=True))] == [
        "features.block1",
        "features.block2",
        "features.block3",
        "classifier:input",
    ]
    assert [s.name for s in stage_outputs(_meta("dm-wrn-70-16"))][-2:] == ["features.layer_2", "classifier:input"]
    matches = specialization(teacher, student, torch.rand(3, 3, 32, 32))
    assert [tuple(m.corr.shape) for m in matches] == [(64, 24), (128, 32), (256, 96), (512, 320), (512, 1280)]
    assert all(torch.isfinite(m.corr).all() for m in matches)


def test_bad_wrn_depth_is_a_config_error():
    with pytest.raises(ConfigError, match="depth 30 is not 6n"):
        cifar.WideResNet(30, 10)


def test_timm_bridge_imports_and_fails_clearly_without_timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    path = os.path.join(os.path.dirname(cifar.__file__), "timm_bridge.py")
    spec = importlib.util.spec_from_file_location("timm_bridge_without_timm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ConfigError, match=r"needs timm, which is not installed: pip install rkdbench\[timm\]"):
        module.make_timm("resnet18")


def test_timm_resnet_with_cifar_stem():
    pytest.importorskip("timm")
    model = rkdbench.create("architecture", "timm:resnet18", cifar_stem=True, num_classes=100).eval()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)


def test_timm_errors_are_one_line():
    pytest.importorskip("timm")
    with pytest.raises(
        UnknownComponentError, match=r"unknown timm model 'resnet81' \(did you mean: .*resnet18"
    ) as unknown:
        rkdbench.create("architecture", "timm:resnet81")
    with pytest.raises(ConfigError, match="cifar_stem knows timm's ResNet") as stem:
        rkdbench.create("architecture", "timm:test_vit", cifar_stem=True)
    with pytest.raises(ConfigError, match="never downloaded") as pretrained:
        rkdbench.create("architecture", "timm:resnet18", pretrained=True)
    assert all("\n" not in str(e.value) for e in (unknown, stem, pretrained))


def test_timm_models_get_specialization_stages_from_feature_info():
    pytest.importorskip("timm")
    torch.manual_seed(0)
    teacher = rkdbench.create("architecture", "timm:resnet18", cifar_stem=True).eval()
    assert [s.name for s in stage_outputs(teacher)] == ["act1", "layer1", "layer2", "layer3", "layer4", "fc:input"]
    student = rkdbench.create("architecture", "resnet-18").eval()
    matches = specialization(teacher, teacher, torch.rand(12, 3, 32, 32), batch_size=6)
    # against itself every unit's best match is itself; units of tiny variance on 12 random images score below 1
    # only through the correlation's epsilon, so the maximum (not the mean) is the exact check here
    assert len(matches) == 6 and all(m.summary()["max_best"] > 0.9995 for m in matches)
    assert len(specialization(teacher, student, torch.rand(12, 3, 32, 32), batch_size=6)) == 5
