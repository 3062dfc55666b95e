"""Protocols: the typed sections, `load_protocol` (TOML + `--set` overrides, validated), and the protocol hash.

A protocol fixes everything but the method (data, threat, teacher, budget, evaluation). Each TOML table is a frozen
`Section` dataclass below, one declaration per field (type, default, allowed values, a one-line description): adding
a protocol field is one declaration there, and `field_table()` lists it in docs/protocols.md (`python
scripts/protocol_docs.py`). Readers use the typed attributes: `protocol.header` ([protocol]), `protocol.threat`,
`protocol.inputs` ([data]: not `protocol.data`, which is the canonical table), `protocol.train`, `protocol.eval`,
`protocol.resources`. `protocol.data` is the canonical nested table (as written, overrides applied, no defaults
added): the protocol hash, the cell key and the logged params are computed over it, so a new optional field changes
no existing hash. `[resources]` (how much hardware a cell asks a scheduler for) is kept out of `data`: where a cell
runs never changes what it computes. So is `[tune]` (`protocol.tune`: the defaults of `rkdbench tune` and the search
space shared by every method), which says how configurations are searched, not what a cell computes: a trial's
sampled values enter its cell as overrides. Every error names the file, the field, the bad value and what is allowed,
before anything is trained.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError, close_matches
from .attack_entry import AttackEntry, parse_attack_entries
from .field_docs import markdown_table
from .fields import Check, Section, above, at_least, optional, required
from .files import canonical_hash, read_toml, resolve_path
from .threat import check_threat
from .tune import DEFAULT_OBJECTIVE, PrunerName, SamplerName, check_objective, parse_space

__all__ = [
    "HeaderConfig",
    "ThreatConfig",
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "ResourcesConfig",
    "TuneConfig",
    "TUNABLE",
    "Protocol",
    "load_protocol",
    "field_table",
]

Augmentation = Literal["none", "pad1-crop", "pad4-crop-flip", "strong"]
Selection = Literal["last", "best-val", "swa"]


@dataclass(frozen=True, kw_only=True)
class HeaderConfig(Section):
    """[protocol]: what the protocol is, its dataset and its default teacher."""

    table = "protocol"
    name: str = required(description="the protocol's name and MLflow experiment (`<name>@<hash8>` once overridden)")
    version: int = required(at_least(1), description="the protocol's version")
    description: str = optional("", description="one line on what the protocol is for")
    dataset: str = required(description="the dataset plugin (`digits`, `cifar10`, `cifar100`, `svhn`, ...)")
    teacher: str = optional(
        "", description="the default teacher (RobustBench-style id); empty: the suite names its teachers"
    )
    data_root: str = optional(
        "", description="the data folder (wins over `--data-dir`); empty: `--data-dir` or the default"
    )


@dataclass(frozen=True, kw_only=True)
class ThreatConfig(Section):
    """[threat]: the threat model."""

    table = "threat"
    norm: Literal["Linf", "L2"] = required(description="the norm of the perturbations")
    eps: float = required(above(0), description="their radius; inputs are in [0, 1]: 8/255 = 0.0314, never 8")


@dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
    """[data]: how the training split is held out and augmented."""

    table = "data"
    split_seed: int = required(at_least(0), description="seed of the stratified validation split held out of training")
    augment: Augmentation = required(description="the training augmentation, batched on the device")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """[train]: the training budget, optimizer and schedule, and how training runs on the device."""

    table = "train"
    epochs: int = required(at_least(1), description="training epochs")
    batch_size: int = required(at_least(1), description="training examples per step")
    optimizer: Literal["sgd", "adam"] = required(description="the optimizer (a method may override its settings)")
    lr: float = required(above(0), description="the initial learning rate")
    momentum: float = required(at_least(0), description="SGD momentum")
    nesterov: bool = optional(False, description="Nesterov momentum (SGD)")
    weight_decay: float = required(at_least(0), description="weight decay")
    schedule: Literal["constant", "piecewise", "cosine"] = required(
        description="the learning-rate schedule: `piecewise` with `milestones` and `gamma`"
    )
    milestones: tuple[int, ...] = optional(
        (), at_least(1, "epochs"), description="the epochs at which `piecewise` multiplies the learning rate by `gamma`"
    )
    gamma: float = optional(0.1, above(0), description="the factor of each `piecewise` milestone")
    val_pgd_steps: int = required(
        at_least(1), description="PGD steps (eps/4, fixed seed) of the per-epoch validation that picks `best-val`"
    )
    device: Literal["auto", "cpu", "cuda"] = optional("auto", description="where to train; `auto`: CUDA when present")
    precision: Literal["auto", "fp32", "bf16"] = optional(
        "fp32",
        description="training numerics: `bf16` autocast is opt-in, legacy `auto` = bf16 on CUDA only; see [GPU](#gpu)",
    )
    channels_last: Literal["auto", "on", "off"] = optional(
        "off", description="student and teachers in channels-last memory format; `auto`: on CUDA only"
    )
    swa_start: int | None = optional(
        None,
        at_least(0, "a 0-based epoch"),
        description="stochastic weight averaging of the student from this epoch on (below); unset: off",
    )
    compile: bool = optional(False, description="`torch.compile` of the networks while training (below)")


@dataclass(frozen=True, kw_only=True)
class EvalConfig(Section):
    """[eval]: which checkpoints are evaluated, on which test points, with which attacks."""

    table = "eval"
    n_examples: int = required(
        at_least(0, "0 = the whole test split"), description="test points evaluated: the first n in file order"
    )
    batch_size: int = required(
        at_least(0, "0 = chosen from free memory on CUDA"),
        description="evaluation batch size; a size chosen from free memory is kept for the whole evaluation",
    )
    seed: int = required(at_least(0), description="seed of the random starts of the attacks and of the validation PGD")
    selections: tuple[Selection, ...] = required(
        Check(lambda v: "last" in v, "a list of 'last', 'best-val' and 'swa', containing 'last'"),
        description="the checkpoints evaluated; `swa` exactly when `train.swa_start` is set",
    )
    attacks: dict[str, AttackEntry] = required(
        convert=parse_attack_entries,
        description="`[eval.attacks.<label>]`: `attack` (a registered attack) and its parameters; reported as "
        "`test.<label>_acc`",
    )
    chunk_size: int = optional(
        0, at_least(0, "0 = all test points in one chunk"), description="test points per resumable chunk (below)"
    )
    diagnostics: bool = optional(
        False, description="calibration error and an eps sweep of the last checkpoint; see [Diagnostics](#diagnostics)"
    )
    rank_by: str | None = optional(
        None, description="the label that ranks the leaderboard: an `[eval.attacks]` label or `clean`; unset: none"
    )


@dataclass(frozen=True, kw_only=True)
class ResourcesConfig(Section):
    """[resources]: what one cell asks a scheduler for (the Ray executor); never hashed."""

    table = "resources"
    gpus_per_cell: float | None = optional(
        None,
        at_least(0, "fractions such as 0.25 share a GPU"),
        description="GPUs a cell asks the Ray executor for; unset: 1 when the cluster has GPUs, else 0",
    )
    cpus_per_cell: int = optional(
        1, at_least(1, "also torch's thread count in the worker"), description="CPUs a cell asks the Ray executor for"
    )


@dataclass(frozen=True, kw_only=True)
class TuneConfig(Section):
    """[tune]: how `rkdbench tune` searches on this protocol (its options override these); never hashed. `space` holds
    `"<table>.<field>" = {log_uniform = [low, high]}` entries (`rkdbench.config.space.TOML_FORMS`) over `TUNABLE`
    fields, typed `Distribution`s once loaded."""

    table = "tune"
    sampler: SamplerName = optional("qmc", description="the study's sampler: `qmc` (Sobol), `random` or `tpe`")
    seed: int = optional(
        0, at_least(0, "the sampler's seed and the trials' training seed"), description="the sampler's seed"
    )
    objective: str = optional(
        DEFAULT_OBJECTIVE, description="the validation metric a study maximizes (never a test-split one)"
    )
    pruner: PrunerName = optional("none", description="`asha` stops unpromising trials early; `none` does not")
    budget: int | None = optional(
        None, at_least(1, "finished trials per method"), description="finished trials per method; unset: `--budget`"
    )
    space: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": '`"<table>.<field>" = {log_uniform = [low, high]}`: the space shared by every method'},
    )


# the tables whose fields a protocol's [tune.space] may search: [protocol], [threat] and [eval] fix what is measured
TUNABLE: dict[str, type[Section]] = {"train": TrainConfig, "data": DataConfig}

# TOML table -> (Protocol attribute, section); [resources] and [tune] are apart (not hashed)
SECTIONS: dict[str, tuple[str, type[Section]]] = {
    "protocol": ("header", HeaderConfig),
    "threat": ("threat", ThreatConfig),
    "data": ("inputs", DataConfig),
    "train": ("train", TrainConfig),
    "eval": ("eval", EvalConfig),
}


def field_table() -> str:
    """docs/protocols.md's field table: every field of every section, then `[resources]` and `[tune]` (neither
    hashed), from the declarations above (`python scripts/protocol_docs.py` writes it into the doc)."""
    return markdown_table([*(section for _, section in SECTIONS.values()), ResourcesConfig, TuneConfig])


@dataclass(frozen=True)
class Protocol:
    """A validated, resolved protocol: typed sections for readers, `data` (the canonical tables) for identities."""

    name: str
    data: dict[str, Any]
    source: str
    overrides: dict[str, Any]
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    header: HeaderConfig = field(init=False, repr=False, compare=False)
    threat: ThreatConfig = field(init=False, repr=False, compare=False)
    inputs: DataConfig = field(init=False, repr=False, compare=False)
    train: TrainConfig = field(init=False, repr=False, compare=False)
    eval: EvalConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attribute, section in _parse_sections(self.source, self.data).items():
            object.__setattr__(self, attribute, section)

    @property
    def hash(self) -> str:
        return canonical_hash(self.data)

    @property
    def experiment_name(self) -> str:
        """One MLflow experiment per protocol; an overridden protocol is a different one (`name@hash`)."""
        return self.name if not self.overrides else f"{self.name}@{self.hash[:8]}"


def _parse_sections(where: str, data: dict[str, Any]) -> dict[str, Section]:
    for table in data:
        if table not in SECTIONS:
            names = [*SECTIONS, "resources", "tune"]
            raise ConfigError(
                f"{where}: unknown section [{table}]{close_matches(table, names)}; allowed: {', '.join(names)}"
            )
    return {attribute: section.parse(where, data.get(table, {})) for table, (attribute, section) in SECTIONS.items()}


def _apply_protocol_overrides(data: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] not in data:
            raise ConfigError(
                f"{where}: unknown field {dotted}{close_matches(parts[0], data)}; protocol sections: {', '.join(data)}"
            )
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if part not in node else node[part]
                if not isinstance(node[part], dict):
                    raise ConfigError(f"{where}: {dotted}: {part} is not a table")
            node = node[part]
        node[parts[-1]] = value


def load_protocol(name_or_path: str, overrides: dict[str, Any] | None = None, where: str = "--set") -> Protocol:
    """Load a built-in protocol by name or any protocol TOML by path, apply overrides, and validate it all."""
    path = resolve_path(name_or_path, "protocols")
    raw = read_toml(path)
    source = str(path)
    overrides = dict(overrides or {})
    resources = _split_resources(source, raw, overrides, where)
    tune = _split_tune(source, raw, overrides, where)
    _parse_sections(source, raw)  # the file itself is valid before any override applies
    data = copy.deepcopy(raw)
    _apply_protocol_overrides(data, overrides, where)
    typed = _parse_sections(f"{source} (after {where})" if overrides else source, data)
    threat, train, evaluation = typed["threat"], typed["train"], typed["eval"]
    check_threat(threat.norm, threat.eps, where=f"{source}: threat")
    _validate_rank_by(source, evaluation)
    _validate_swa(source, train, evaluation)
    return Protocol(
        name=data["protocol"]["name"], data=data, source=source, overrides=overrides, resources=resources, tune=tune
    )


def _split_resources(source: str, raw: dict[str, Any], overrides: dict[str, Any], where: str) -> ResourcesConfig:
    """Take [resources] out of the TOML and `resources.*` out of the overrides (both in place), validated."""
    table = raw.pop("resources", {})
    ResourcesConfig.parse(source, table)
    table = dict(table)
    for dotted in [k for k in overrides if k.split(".")[0] == "resources"]:
        table[dotted.partition(".")[2]] = overrides.pop(dotted)
        ResourcesConfig.parse(where, table)
    return ResourcesConfig.parse(source, table)


def _split_tune(source: str, raw: dict[str, Any], overrides: dict[str, Any], where: str) -> TuneConfig:
    """Take [tune] out of the TOML and `tune.*` out of the overrides (both in place; `tune.space.train.lr = {...}`
    sets one space entry), validated, with the space typed."""
    table = raw.pop("tune", {})
    _parse_tune(source, table)  # the file itself is valid before any override applies
    table = copy.deepcopy(table)
    dotted = [k for k in overrides if k.split(".")[0] == "tune"]
    for key in dotted:
        name, _, entry = key.partition(".")[2].partition(".")
        if entry and name == "space":
            table.setdefault("space", {})[entry] = overrides.pop(key)
        elif entry:
            raise ConfigError(f"{where}: {key}: tune.{name} is not a table; allowed: tune.<field> or tune.space.<name>")
        else:
            table[name] = overrides.pop(key)
    return _parse_tune(f"{source} (after {where})" if dotted else source, table)


def _parse_tune(where: str, table: Any) -> TuneConfig:
    tune: TuneConfig = TuneConfig.parse(where, table)
    check_objective(f"{where}: tune.objective", tune.objective)
    return dataclasses.replace(tune, space=parse_space(f"{where}: [tune.space]", tune.space, TUNABLE))


def _validate_swa(where: str, train: TrainConfig, evaluation: EvalConfig) -> None:
    start = train.swa_start
    if ("swa" in evaluation.selections) != (start is not None):
        raise ConfigError(
            f"{where}: eval.selections contains 'swa' exactly when train.swa_start is set "
            f"(selections {list(evaluation.selections)}, swa_start {start})"
        )
    if start is not None and start >= train.epochs:
        raise ConfigError(f"{where}: train.swa_start = {start} must be below train.epochs = {train.epochs}")


def _validate_rank_by(where: str, evaluation: EvalConfig) -> None:
    labels = ["clean", *evaluation.attacks]
    if evaluation.rank_by is not None and evaluation.rank_by not in labels:
        raise ConfigError(
            f"{where}: eval.rank_by = {evaluation.rank_by!r} is not allowed; allowed: "
            f"{', '.join(labels)} (the labels of eval.attacks, or clean)"
            f"{close_matches(evaluation.rank_by, labels)}"
        )
