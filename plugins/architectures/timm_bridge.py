"""The `timm:` architecture family: `timm:<model>` is `timm.create_model(<model>, pretrained=False, ...)`, so any of
timm's ~1,300 networks can be a student or teacher without being listed here. timm is an optional extra: this
module imports without it, and building a model without it is a one-line error naming the install command.
Weights are never downloaded (teachers come from checkpoints). `cifar_stem=True` swaps an ImageNet stem (7x7
stride-2 conv and max-pool, or a stride-2 3x3 conv) for a 3x3 stride-1 conv without pooling, which 32x32 inputs
need to keep their resolution; it knows timm's ResNet family (resnet*, resnext*, seresnet*, wide_resnet*, the
deep-stem `d` variants) and its EfficientNet / MobileNetV3 families, and refuses the others.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rkdbench import ConfigError, UnknownComponentError, close_matches, hookimpl

__all__ = ["INSTALL_HINT", "make_timm"]

INSTALL_HINT = "pip install rkdbench[timm]"


def _cifar_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)


def _use_cifar_stem(model: nn.Module, model_name: str, in_channels: int) -> None:
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet

    if isinstance(model, ResNet):
        # bn1 follows the stem however deep it is (the `d` variants end theirs in a Sequential): it gives the width.
        model.conv1 = _cifar_conv(in_channels, model.bn1.num_features)
        model.maxpool = nn.Identity()
    elif isinstance(model, (EfficientNet, MobileNetV3)):
        model.conv_stem = _cifar_conv(in_channels, model.conv_stem.out_channels)
    else:
        raise ConfigError(
            f"timm:{model_name}: cifar_stem knows timm's ResNet, EfficientNet and MobileNetV3 stems, "
            f"not {type(model).__name__}'s; drop cifar_stem or pick one of those families"
        )


def make_timm(
    model_name: str, num_classes: int = 10, in_channels: int = 3, cifar_stem: bool = False, **kwargs: Any
) -> nn.Module:
    """timm's `model_name` with a fresh `num_classes` head and `in_channels` inputs; other keyword arguments go
    to `timm.create_model` (e.g. drop_rate)."""
    try:
        import timm
    except ImportError as exc:
        raise ConfigError(
            f"architecture 'timm:{model_name}' needs timm, which is not installed: {INSTALL_HINT}"
        ) from exc
    if not timm.is_model(model_name):
        hint = close_matches(model_name, timm.list_models())
        raise UnknownComponentError(f"unknown timm model {model_name!r}{hint}; timm.list_models() lists them")
    if kwargs.pop("pretrained", False):
        raise ConfigError(
            f"timm:{model_name}: pretrained weights are never downloaded; give a teacher checkpoint instead"
        )
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    if cifar_stem:
        _use_cifar_stem(model, model_name, in_channels)
    return model


@hookimpl
def register_architectures(register):
    register(make_timm, name="timm:")
