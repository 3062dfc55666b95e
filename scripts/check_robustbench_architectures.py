"""Numerical equivalence of rkdbench's CIFAR architectures with RobustBench's own classes.

For each pair: RobustBench's model (random weights, randomized BatchNorm statistics), its state dict loaded
strictly into rkdbench's model, and the largest logit difference on random inputs. Needs RobustBench's source:
either the installed `robustbench` extra or an unpacked wheel (`pip download robustbench==1.1.1 --no-deps`, then
unzip it) given with --robustbench-dir. Only the architecture modules are imported (stub parent packages), so
RobustBench's broken `__init__` never runs.

Run:  python scripts/check_robustbench_architectures.py [--robustbench-dir DIR/robustbench]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types

import torch

import rkdbench


def import_architectures(root: str | None):
    if root is None:
        spec = importlib.util.find_spec("robustbench")
        if spec is None:
            sys.exit("robustbench is not installed; pass --robustbench-dir (an unpacked robustbench wheel's package)")
        root = spec.submodule_search_locations[0]
    for name, path in [
        ("robustbench", root),
        ("robustbench.model_zoo", f"{root}/model_zoo"),
        ("robustbench.model_zoo.architectures", f"{root}/model_zoo/architectures"),
    ]:
        stub = types.ModuleType(name)
        stub.__path__ = [path]
        sys.modules.setdefault(name, stub)
    arch = "robustbench.model_zoo.architectures"
    return (
        importlib.import_module(f"{arch}.resnet"),
        importlib.import_module(f"{arch}.wide_resnet"),
        importlib.import_module(f"{arch}.dm_wide_resnet"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robustbench-dir", default=None)
    args = parser.parse_args()
    rn, wrn, dm = import_architectures(args.robustbench_dir)
    stats10 = {"mean": dm.CIFAR10_MEAN, "std": dm.CIFAR10_STD}
    stats100 = {"mean": dm.CIFAR100_MEAN, "std": dm.CIFAR100_STD}
    cases = [
        ("resnet-18", {}, 10, lambda: rn.ResNet18()),
        ("resnet-34", {}, 10, lambda: rn.ResNet34()),
        ("preact-resnet-18", {"bn_before_fc": False}, 10, lambda: rn.PreActResNet18()),
        ("wrn-34-10", {"sub_block1": True}, 10, lambda: wrn.WideResNet(depth=34, widen_factor=10, sub_block1=True)),
        ("wrn-34-20", {}, 10, lambda: wrn.WideResNet(depth=34, widen_factor=20)),
        ("wrn-28-10", {}, 10, lambda: wrn.WideResNet(depth=28, widen_factor=10)),
        (
            "dm-wrn-28-10",
            {},
            10,
            lambda: dm.DMWideResNet(num_classes=10, depth=28, width=10, activation_fn=dm.Swish, **stats10),
        ),
        (
            "dm-wrn-28-10",
            {k: list(v) for k, v in stats100.items()},
            100,
            lambda: dm.DMWideResNet(num_classes=100, depth=28, width=10, activation_fn=dm.Swish, **stats100),
        ),
        (
            "preact-resnet-18-swish",
            {},
            10,
            lambda: dm.DMPreActResNet(num_classes=10, depth=18, width=0, activation_fn=dm.Swish, **stats10),
        ),
    ]
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    worst = 0.0
    for name, kwargs, classes, reference in cases:
        theirs = reference().eval()
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        ours = rkdbench.create("architecture", name, num_classes=classes, in_channels=3, **kwargs).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        with torch.no_grad():
            diff = (ours(x) - theirs(x)).abs().max().item()
            scale = theirs(x).abs().max().item()
        worst = max(worst, diff / max(scale, 1e-12))
        print(f"{name:<24}{classes:>4} classes  strict load ok  max |logit diff| {diff:.1e}  (max |logit| {scale:.2f})")
    print(f"largest relative difference: {worst:.1e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
