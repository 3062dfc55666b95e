"""The CIFAR recipes resolve as the official code (METHODS.md): fp32 training (bf16 opt-in and part of the cell
key), AdaAD's batchmean KL on CIFAR-100 only, MART's beta of the ResNet-18 script in the ResNet-18 suites, MTARD's
eta decay tied to the lr milestones; the digits protocol keeps its hash."""

from __future__ import annotations

import torch

from rkdbench.config import builtin_names, load_protocol, load_suite
from rkdbench.run.cells import expand_cells
from rkdbench.training.engine import gpu_features

CUDA = torch.device("cuda")


def cells(suite: str, **cli_set):
    return {c.method: c for c in expand_cells(load_suite(suite, cli_set or None))}


def test_every_cifar_protocol_trains_in_fp32_even_on_cuda():
    names = [n for n in builtin_names("protocols") if n.startswith("cifar")]
    assert len(names) >= 8  # the shipped CIFAR-10/100 protocols and paper recipes
    for name in names:
        train = load_protocol(name).train
        assert train.precision == "fp32", name
        assert gpu_features(train, CUDA)[0] is False, name  # no bf16 autocast


def test_bf16_is_opt_in_and_changes_the_protocol_hash_and_the_cell_key():
    fp32 = cells("cifar10-short")["rslad"]
    bf16 = cells("cifar10-short", **{"train.precision": "bf16"})["rslad"]
    assert gpu_features(bf16.protocol.train, CUDA)[0] is True
    assert fp32.protocol.hash != bf16.protocol.hash and fp32.key != bf16.key
    assert bf16.protocol.experiment_name.startswith("cifar10-linf-8-short@")


def test_the_digits_protocol_keeps_its_hash():
    # the committed digits leaderboards are keyed by it (leaderboards/digits-linf@2d532252 is digits-all-quick's)
    assert load_suite("digits-all-quick").protocol.experiment_name == "digits-linf@2d532252"
    assert load_suite("digits-full").protocol.hash == "2146ed1f1d9c19f7"  # leaderboards/digits-linf
    assert "precision" not in load_protocol("digits-linf").data["train"]  # absent = fp32


def test_adaad_uses_batchmean_on_cifar100_only():
    assert cells("cifar100-standard")["adaad"].method_params["kl_reduction"] == "batchmean"
    for suite in ("cifar10-standard", "cifar10-short", "cifar10-paper-adaad"):
        assert cells(suite)["adaad"].method_params["kl_reduction"] == "mean", suite


def test_mart_beta_follows_the_official_script_of_the_student():
    for suite in ("cifar10-standard", "cifar10-short", "cifar100-standard"):  # ResNet-18 (and MobileNetV2) students
        assert cells(suite)["mart"].method_params["beta"] == 5.0, suite
    assert cells("digits-all-quick")["mart"].method_params["beta"] == 6.0  # the default: the WideResNet script


def test_mtard_eta_decay_defaults_to_the_protocols_milestones_in_every_suite():
    for suite in ("cifar10-standard", "cifar10-paper-mtard", "cifar100-standard", "digits-all-quick"):
        assert cells(suite)["mtard"].method_params["eta_decay_epochs"] == "auto", suite
    assert load_protocol("cifar10-linf-8-paper-rslad").train.milestones == (215, 260, 285)


def test_bn_side_effects_default_on_where_the_official_code_has_them():
    suite = cells("cifar10-standard")
    for method in ("pgd-at", "ard", "iad", "adaad"):
        assert suite[method].method_params["bn_side_effects"] is True, method
