"""The CIFAR teacher zoo: RobustBench ids with model cards (architecture, source, reported clean / AutoAttack
accuracy at eps, license), loaded offline from a RobustBench model dir, plus one real teacher that needs no
download at all: the CIFAR-10 ResNet-18 that pyautoattack's wheel ships as `examples/model_test.pt`.

Reported numbers are RobustBench's leaderboard values (../shared/EVALUATION.md; AutoAttack standard on the
10,000 test points at Linf 8/255 unless `eps` says otherwise). They are what the authors' checkpoints scored
there, not measurements of this harness: `rkdbench evaluate <id> --protocol cifar10-linf-8` measures them
here and writes the result into the teacher's measured card. Checkpoints are never downloaded at run time:
`rkdbench teachers fetch <id>` (optional robustbench extra, network) or a copy of an existing model dir.
"""

from __future__ import annotations

from rkdbench import TeacherCard, hookimpl

__all__ = ["ZOO", "AUTOATTACK_EXAMPLE", "CIFAR100_NATURAL"]

EPS_8 = 8 / 255
CIFAR10_STATS = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}
CIFAR100_STATS = {"mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762]}
ZOO_LICENSE = "the authors' terms (distributed through the RobustBench model zoo; check the paper's release)"


def _zoo(
    dataset: str, name: str, architecture: str, clean: float, aa: float, source: str, eps: float = EPS_8, **arch_kwargs
) -> TeacherCard:
    classes = 100 if dataset == "cifar100" else 10
    return TeacherCard(
        name=f"{dataset}/Linf/{name}",
        architecture=architecture,
        dataset=dataset,
        norm="Linf",
        eps=EPS_8,
        num_classes=classes,
        in_channels=3,
        source=source,
        license=ZOO_LICENSE,
        reported={
            "clean_acc": clean,
            "aa_acc": aa,
            "eps": round(eps, 6),
            "n_examples": 10000,
            "by": "RobustBench leaderboard",
        },
        arch_kwargs=arch_kwargs,
    )


ZOO: list[TeacherCard] = [
    _zoo(
        "cifar10",
        "Zhang2019Theoretically",
        "wrn-34-10",
        84.92,
        53.08,
        "TRADES (Zhang et al., ICML 2019), the ARD/RSLAD teacher; RobustBench evaluated it at eps 0.031",
        eps=0.031,
        sub_block1=True,
    ),
    _zoo("cifar10", "Chen2021LTD_WRN34_10", "wrn-34-10", 85.21, 56.94, "LTD (Chen et al., 2021), WRN-34-10"),
    _zoo(
        "cifar10",
        "Chen2021LTD_WRN34_20",
        "wrn-34-20",
        86.03,
        57.71,
        "LTD (Chen et al., 2021), WRN-34-20; AdaAD's teacher",
    ),
    _zoo("cifar10", "Wu2020Adversarial", "wrn-34-10", 85.36, 56.17, "AWP (Wu et al., NeurIPS 2020), WRN-34-10"),
    _zoo(
        "cifar10",
        "Sehwag2021Proxy_R18",
        "resnet-18",
        84.59,
        55.54,
        "Proxy distributions (Sehwag et al., ICLR 2022), ResNet-18",
    ),
    _zoo(
        "cifar10",
        "Addepalli2022Efficient_RN18",
        "resnet-18",
        85.71,
        52.48,
        "Efficient and effective augmentation (Addepalli et al., NeurIPS 2022), ResNet-18",
    ),
    _zoo(
        "cifar10",
        "Rebuffi2021Fixing_R18_ddpm",
        "preact-resnet-18-swish",
        83.53,
        56.66,
        "Fixing data augmentation (Rebuffi et al., 2021), DeepMind PreActResNet-18 with Swish, DDPM data",
        **CIFAR10_STATS,
    ),
    _zoo(
        "cifar10",
        "Gowal2020Uncovering_70_16",
        "dm-wrn-70-16",
        85.29,
        57.20,
        "Uncovering the limits (Gowal et al., 2020), DeepMind WRN-70-16 with Swish",
        **CIFAR10_STATS,
    ),
    _zoo(
        "cifar10",
        "Gowal2021Improving_28_10_ddpm_100m",
        "dm-wrn-28-10",
        87.50,
        63.38,
        "Improving robustness using generated data (Gowal et al., NeurIPS 2021), DeepMind WRN-28-10 with Swish, "
        "100M DDPM images; SAAD's CIFAR-10 teacher",
        **CIFAR10_STATS,
    ),
    _zoo(
        "cifar10",
        "Carmon2019Unlabeled",
        "wrn-28-10",
        89.69,
        59.53,
        "Unlabeled data (Carmon et al., NeurIPS 2019), WRN-28-10",
        sub_block1=True,
    ),
    _zoo(
        "cifar10",
        "Standard",
        "wrn-28-10",
        94.78,
        0.0,
        "RobustBench's naturally trained WRN-28-10 (not robust): the `natural` role for MTARD / IAD-II",
    ),
    _zoo(
        "cifar100",
        "Chen2021LTD_WRN34_10",
        "wrn-34-10",
        64.07,
        30.59,
        "LTD (Chen et al., 2021), WRN-34-10",
        sub_block1=True,
    ),
    _zoo(
        "cifar100",
        "Gowal2020Uncovering",
        "dm-wrn-70-16",
        60.86,
        30.03,
        "Uncovering the limits (Gowal et al., 2020), DeepMind WRN-70-16 with Swish",
        **CIFAR100_STATS,
    ),
    _zoo(
        "cifar100",
        "Addepalli2022Efficient_RN18",
        "resnet-18",
        65.45,
        27.67,
        "Efficient and effective augmentation (Addepalli et al., NeurIPS 2022), ResNet-18",
    ),
    _zoo(
        "cifar100",
        "Rebuffi2021Fixing_R18_ddpm",
        "preact-resnet-18-swish",
        56.87,
        28.50,
        "Fixing data augmentation (Rebuffi et al., 2021), DeepMind PreActResNet-18 with Swish, DDPM data",
        **CIFAR100_STATS,
    ),
]

AUTOATTACK_EXAMPLE = TeacherCard(
    name="cifar10/Linf/AutoAttack-example-R18",
    architecture="resnet-18",
    dataset="cifar10",
    norm="Linf",
    eps=EPS_8,
    num_classes=10,
    in_channels=3,
    source="pyautoattack's wheel, examples/model_test.pt (the AutoAttack authors' CIFAR-10 ResNet-18 example). "
    "Its accuracy is not published: unmeasured until `rkdbench evaluate` runs on CIFAR-10 data here",
    license="pyautoattack's license (MIT)",
    bundled="pyautoattack:examples/model_test.pt",
    # pinned: a different file under the same name (another pyautoattack release) is a different teacher
    sha256="399f52da9f914c323fa5a6096d60f460a3449a59b64a6405200c1e629f8425a7",
)

# RobustBench lists no naturally trained CIFAR-100 model; MTARD / IAD-II need one, so the harness builds it.
CIFAR100_NATURAL = TeacherCard(
    name="cifar100/Linf/rkdbench-wrn-28-10-standard",
    architecture="wrn-28-10",
    dataset="cifar100",
    norm="Linf",
    eps=EPS_8,
    num_classes=100,
    in_channels=3,
    source="built by rkdbench: standard (clean cross-entropy) training on cifar100-linf-8's data and budget, "
    "last epoch",
    license="CIFAR-100 terms; weights produced locally",
    # the last epoch: validation PGD accuracy, which picks a robust teacher's epoch, is ~0 for a natural one
    recipe={"protocol": "cifar100-linf-8", "method": "standard", "seed": 0, "selection": "last"},
)


@hookimpl
def register_teachers(register):
    for card in [*ZOO, AUTOATTACK_EXAMPLE, CIFAR100_NATURAL]:
        register(card)
