"""The tracking schema: every name rkdbench writes to or searches in MLflow, in one place.

Tag names are constants (`CELL`, `PROTOCOL_HASH`, ...; `tag(name)` for a name built at run time, e.g. a
selection's flags tag), run kinds are `RunKind.CELL`, `TRIAL`, `STUDY`, `EVALUATION` and `LEADERBOARD`, the tag sets
of each kind are built by `experiment_tags`, `cell_tags` (with `trial_tags` on a tuning trial), `training_tags`,
`study_tags`, `evaluation_tags` and `leaderboard_tags`, params are flattened by `protocol_params`, and the search
filters are built by `runs_filter` (and its named shortcuts `finished_cells`, `cell_runs`, `all_cells`,
`finished_studies`, `finished_evaluations`, `leaderboard_runs`, `RKDBENCH_RUNS`). Metric names (`test.pgd20_acc`,
`best_val.strong.apgd-ce_acc`, `worst_class_pgd20_acc`, `val.pgd_acc`, `train.seconds`) are built by `metric_key`
(a selection's split by `selection_split`, a whole dict by `with_split`) and read back by `parse_metric_key`, so no
other module slices or formats one. The strings are exactly those earlier versions wrote and searched, so stores
written before this module read the same; the documentation of the schema is docs/tracking.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PREFIX",
    "tag",
    "column",
    "short_column",
    "RunKind",
    "RUN_KINDS",
    "MAX_PARAM_LENGTH",
    "param_text",
    "flatten",
    "unflatten",
    "protocol_params",
    "PROTOCOL_PARAMS",
    "experiment_tags",
    "cell_tags",
    "trial_tags",
    "study_tags",
    "TrialState",
    "training_tags",
    "timing_tags",
    "CELL_TRAIN_SECONDS",
    "CELL_EVAL_SECONDS",
    "evaluation_tags",
    "leaderboard_tags",
    "runs_filter",
    "finished_cells",
    "cell_runs",
    "all_cells",
    "finished_studies",
    "finished_evaluations",
    "leaderboard_runs",
    "RKDBENCH_RUNS",
    "NEWEST_FIRST",
    "ACC",
    "SECONDS",
    "SELECTION_SPLITS",
    "DIAGNOSTICS_SPLIT",
    "SPLITS",
    "MetricKey",
    "metric_key",
    "parse_metric_key",
    "selection_split",
    "with_split",
    "metric_column",
    "metric_of_column",
    "attack_measure_key",
    "MEASURE_TAS",
    "MEASURE_TAS_CLEAN",
    "MEASURE_TEACHER_ADV_ACC",
    "CLASS",
    "VAL_CLEAN_ACC",
    "VAL_PGD_ACC",
    "VAL_SECONDS",
    "TRAIN_LR",
    "TRAIN_LOSS",
    "TRAIN_EPOCH_SECONDS",
    "TRAIN_SECONDS",
    "TRIAL_EPOCHS",
    "TEST_N_EXAMPLES",
    "TEST_BATCH_SIZE",
    "BEST_VAL_EPOCH",
    "SWA_N_AVERAGED",
    "DIAG_ECE_CLEAN",
    "DIAG_ECE_ADV",
]

PREFIX = "rkdbench."


def tag(name: str) -> str:
    """The full name of an rkdbench tag: `tag("flags")` -> `rkdbench.flags`."""
    return PREFIX + name


# Run tags (the `rkdbench.` names); experiments carry PROTOCOL and PROTOCOL_HASH
KIND, CELL, SUITE, SEED = tag("kind"), tag("cell"), tag("suite"), tag("seed")
PROTOCOL, PROTOCOL_HASH, PROTOCOL_OVERRIDES = tag("protocol"), tag("protocol_hash"), tag("protocol_overrides")
METHOD, METHOD_VARIANT, STUDENT, TEACHER = tag("method"), tag("method_variant"), tag("student"), tag("teacher")
PLUGIN, PLUGIN_VERSION, GIT_SHA = tag("plugin"), tag("plugin_version"), tag("git_sha")
DEVICE, PRECISION, CHANNELS_LAST = tag("device"), tag("precision"), tag("channels_last")
DEVICE_NAME, THREADS = tag("device_name"), tag("threads")
TRANSFERABILITY, SPECIALIZATION = tag("transferability"), tag("specialization")
MODEL, MODEL_SHA256, ARCHITECTURE = tag("model"), tag("model_sha256"), tag("architecture")
SELECTION, RANKED_BY = tag("selection"), tag("ranked_by")
LEADERBOARD_ROWS, LEADERBOARD_SHA256 = tag("leaderboard_rows"), tag("leaderboard_sha256")
# tuning (`rkdbench tune`): a trial run's study, Optuna trial number, sampled values and end; a study run's record
STUDY, TRIAL, TRIAL_VALUES, TRIAL_STATE = tag("study"), tag("trial"), tag("trial_values"), tag("trial_state")
SAMPLER, SAMPLER_SEED, OBJECTIVE, PRUNER = tag("sampler"), tag("sampler_seed"), tag("objective"), tag("pruner")
BUDGET, SELECTED_TRIAL, SELECTED_VALUES = tag("budget"), tag("selected_trial"), tag("selected_values")
SELECTED_OVERRIDES, TUNED_CELLS = tag("selected_overrides"), tag("tuned_cells")

# User attributes of an Optuna study (what the tuned tables report) and of its trials (rkdbench.tuning.study)
STUDY_IDENTITY, STUDY_SPACE, STUDY_SAMPLER = tag("identity"), tag("space"), tag("sampler")
TRIAL_ORIGIN, TRIAL_VERDICT = tag("origin"), tag("verdict")


def column(tag_name: str) -> str:
    """The column of a tag in a `search_runs` DataFrame: `tags.rkdbench.cell`."""
    return f"tags.{tag_name}"


def short_column(name: str) -> str:
    """A DataFrame column with the rkdbench tag prefix dropped (`tags.rkdbench.seed` -> `seed`); others unchanged."""
    full = column(PREFIX)
    return name[len(full) :] if name.startswith(full) else name


class RunKind:
    """The values of the KIND tag. Leaderboards read only CELL runs (the tuned view also STUDY runs)."""

    CELL = "cell"  # one trained cell (`rkdbench run`)
    TRIAL = "trial"  # one tuning trial: trained and validated, never evaluated on the test split (`rkdbench tune`)
    STUDY = "study"  # one finished study: its budget, trials, selection and the selected cells (`rkdbench tune`)
    EVALUATION = "evaluation"  # one model evaluated without training (`rkdbench evaluate`)
    LEADERBOARD = "leaderboard"  # one logged leaderboard table (`rkdbench leaderboard`)


RUN_KINDS = (RunKind.CELL, RunKind.TRIAL, RunKind.STUDY, RunKind.EVALUATION, RunKind.LEADERBOARD)


class TrialState:
    """The values of the TRIAL_STATE tag of a finished trial run."""

    COMPLETE = "complete"  # trained to its last epoch
    PRUNED = "pruned"  # stopped early by the pruner (`--pruner asha`)


# MLflow's limit on a param value's length (longer values are cut, and compared cut)
MAX_PARAM_LENGTH = 6000
PROTOCOL_PARAMS = "protocol."


def param_text(value: Any) -> str:
    """A param value as MLflow stores it."""
    return str(value)[:MAX_PARAM_LENGTH]


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}: the inverse of `flatten` for keys without dots of their own."""
    data: dict[str, Any] = {}
    for name, value in flat.items():
        *tables, key = name.split(".")
        node = data
        for table in tables:
            node = node.setdefault(table, {})
        node[key] = value
    return data


def protocol_params(data: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved protocol's tables as run params: `protocol.<table>.<field>`."""
    return {f"{PROTOCOL_PARAMS}{name}": value for name, value in flatten(data).items()}


def experiment_tags(protocol: str, protocol_hash: str) -> dict[str, str]:
    """The tags of a protocol's experiment."""
    return {PROTOCOL: protocol, PROTOCOL_HASH: protocol_hash}


def cell_tags(
    *,
    cell: str,
    protocol: str,
    protocol_hash: str,
    protocol_overrides: str,
    method: str,
    variant: str,
    student: str,
    teacher: str,
    seed: int,
    suite: str,
    plugin: str,
    extra_teachers: Mapping[str, str],
    plugin_version: str,
    git_sha: str,
) -> dict[str, str]:
    """The tags a cell run is created with (`extra_teachers`: role -> teacher name, as `rkdbench.teacher.<role>`)."""
    return {
        KIND: RunKind.CELL,
        CELL: cell,
        PROTOCOL: protocol,
        PROTOCOL_HASH: protocol_hash,
        PROTOCOL_OVERRIDES: protocol_overrides,
        METHOD: method,
        METHOD_VARIANT: variant,
        STUDENT: student,
        TEACHER: teacher,
        SEED: str(seed),
        SUITE: suite,
        PLUGIN: plugin,
        **{f"{TEACHER}.{role}": name for role, name in extra_teachers.items()},
        PLUGIN_VERSION: plugin_version,
        GIT_SHA: git_sha,
    }


def trial_tags(*, study: str, number: int, values: str) -> dict[str, str]:
    """What a tuning trial's run carries besides `cell_tags` (which it replaces the kind of): its study, the Optuna
    trial number that runs it (a retried trial resumes the run and retags it) and its sampled values (JSON)."""
    return {KIND: RunKind.TRIAL, STUDY: study, TRIAL: str(number), TRIAL_VALUES: values}


def study_tags(
    *,
    cell: str,
    protocol: str,
    protocol_hash: str,
    study: str,
    method: str,
    variant: str,
    student: str,
    teacher: str,
    suite: str,
    sampler: str,
    sampler_seed: int,
    objective: str,
    pruner: str,
    budget: int,
    selected_trial: int,
    selected_values: str,
    selected_overrides: str,
    tuned_cells: str,
    git_sha: str,
) -> dict[str, str]:
    """The tags of a `study` run: which study (its protocol is the suite's), how it searched, what it selected
    (`selected_values` and `selected_overrides` as JSON) and the keys of the selected configuration's cells, one per
    seed, comma-separated (`tuned_cells`: the rows of the tuned leaderboard)."""
    return {
        KIND: RunKind.STUDY,
        CELL: cell,
        PROTOCOL: protocol,
        PROTOCOL_HASH: protocol_hash,
        STUDY: study,
        METHOD: method,
        METHOD_VARIANT: variant,
        STUDENT: student,
        TEACHER: teacher,
        SUITE: suite,
        SAMPLER: sampler,
        SAMPLER_SEED: str(sampler_seed),
        OBJECTIVE: objective,
        PRUNER: pruner,
        BUDGET: str(budget),
        SELECTED_TRIAL: str(selected_trial),
        SELECTED_VALUES: selected_values,
        SELECTED_OVERRIDES: selected_overrides,
        TUNED_CELLS: tuned_cells,
        GIT_SHA: git_sha,
    }


def training_tags(precision: str, channels_last: bool) -> dict[str, str]:
    """How a cell was trained (set after training; its DEVICE is tagged when training starts): the autocast
    precision the engine used and the memory format."""
    return {PRECISION: precision, CHANNELS_LAST: str(channels_last).lower()}


def timing_tags(device_name: str, threads: int) -> dict[str, str]:
    """What a cell's logged wall times depend on besides its work (set when training starts): the device's model
    (GPU name, else CPU model) and the process's torch threads."""
    return {DEVICE_NAME: device_name, THREADS: str(threads)}


# A cell's wall seconds, logged with its final metrics when one process ran it from the start (never after a
# resume, whose times would be partial): training (from the cell's setup to the last epoch) and evaluation (every
# selection, diagnostics and specialization). Later predictions of cells of the same kind read them
# (`rkdbench.cost.learned`).
CELL_TRAIN_SECONDS, CELL_EVAL_SECONDS = "cell.train_seconds", "cell.eval_seconds"


def evaluation_tags(
    *,
    protocol: str,
    protocol_hash: str,
    protocol_overrides: str,
    model: str,
    model_sha256: str,
    architecture: str,
    git_sha: str,
    flags_tag: str,
    flags: str,
    teacher: str | None = None,
) -> dict[str, str]:
    """The tags of an `evaluation` run; `flags_tag` is the (short) flags tag name of the evaluated selection."""
    return {
        KIND: RunKind.EVALUATION,
        PROTOCOL: protocol,
        PROTOCOL_HASH: protocol_hash,
        PROTOCOL_OVERRIDES: protocol_overrides,
        MODEL: model,
        MODEL_SHA256: model_sha256,
        ARCHITECTURE: architecture,
        GIT_SHA: git_sha,
        tag(flags_tag): flags,
        **({TEACHER: teacher} if teacher is not None else {}),
    }


def leaderboard_tags(
    *, protocol: str, protocol_hash: str, selection: str, ranked_by: str, rows: int, digest: str, git_sha: str
) -> dict[str, str]:
    """The tags of a `leaderboard` run."""
    return {
        KIND: RunKind.LEADERBOARD,
        PROTOCOL: protocol,
        PROTOCOL_HASH: protocol_hash,
        SELECTION: selection,
        RANKED_BY: ranked_by,
        LEADERBOARD_ROWS: str(rows),
        LEADERBOARD_SHA256: digest,
        GIT_SHA: git_sha,
    }


def _equals(tag_name: str, value: str) -> str:
    return f"tags.`{tag_name}` = '{value}'"


FINISHED = "attributes.status = 'FINISHED'"
NEWEST_FIRST = ["attributes.start_time DESC"]
# Every run rkdbench wrote (each kind carries its protocol)
RKDBENCH_RUNS = f"tags.`{PROTOCOL}` LIKE '%'"


def runs_filter(
    kind: str | None = None,
    *,
    finished: bool = False,
    protocol: str | None = None,
    protocol_hash: str | None = None,
    selection: str | None = None,
    cell: str | None = None,
) -> str:
    """An MLflow filter string: the runs of `kind`, FINISHED ones only when `finished`, and of the given
    protocol name, protocol hash, selection and cell key (None or '': any)."""
    clauses = [
        _equals(KIND, kind) if kind else "",
        FINISHED if finished else "",
        *(
            _equals(name, value) if value else ""
            for name, value in (
                (PROTOCOL, protocol),
                (PROTOCOL_HASH, protocol_hash),
                (SELECTION, selection),
                (CELL, cell),
            )
        ),
    ]
    return " and ".join(clause for clause in clauses if clause)


def finished_cells(protocol: str | None = None) -> str:
    """The FINISHED cell runs (of one protocol name): a leaderboard's rows."""
    return runs_filter(RunKind.CELL, finished=True, protocol=protocol)


def cell_runs(key: str) -> str:
    """The runs of one cell key (any status): `counting` picks the one that counts."""
    return runs_filter(cell=key)


def all_cells(protocol_hash: str | None = None) -> str:
    """Every cell run, of any status (of one protocol hash)."""
    return runs_filter(RunKind.CELL, protocol_hash=protocol_hash)


def finished_studies(protocol: str | None = None) -> str:
    """The FINISHED study runs (of one protocol name): the tuned leaderboard's studies."""
    return runs_filter(RunKind.STUDY, finished=True, protocol=protocol)


def finished_evaluations() -> str:
    """The FINISHED `rkdbench evaluate` runs."""
    return runs_filter(RunKind.EVALUATION, finished=True)


def leaderboard_runs(protocol_hash: str, selection: str) -> str:
    """The logged leaderboard runs of one protocol hash and checkpoint selection."""
    return runs_filter(RunKind.LEADERBOARD, protocol_hash=protocol_hash, selection=selection)


# ---- metric names: `[<split>.]<label>[.<stage>]_<kind>`, `[<split>.]worst_class_<label>_<kind>`, `<split>.<name>` --

ACC, SECONDS, CLASS = "acc", "seconds", "class"  # the kinds a metric name ends with (`_acc`); "" for a plain name
KINDS = (ACC, SECONDS, CLASS)
# Each checkpoint selection's split: its final evaluation's metrics are `<split>.<evaluation metric>`
SELECTION_SPLITS = {"last": "test", "best-val": "best_val", "swa": "swa"}
EVALUATION_SPLITS = tuple(SELECTION_SPLITS.values())
# Every split a cell run logs under: the selections' evaluations, the epochs' validation and training, the
# diagnostics, student specialization and the engine's pass counts
DIAGNOSTICS_SPLIT = "diag"
SPLITS = (*EVALUATION_SPLITS, "val", "train", DIAGNOSTICS_SPLIT, "spec", "cost", "trial")
WORST_CLASS = "worst_class_"  # `worst_class_<label>_acc`: the accuracy of the worst class under the label


@dataclass(frozen=True)
class MetricKey:
    """A metric name's parts: `test.strong.apgd-ce_acc` is split `test`, label `strong`, stage `apgd-ce`, kind `acc`.

    `split` is "" for an evaluation's own metrics and a teacher card's numbers (`pgd20_acc`); `label` is an attack
    label, `clean`, `worst` or a quantity's name (`lr`, `n_examples`); `stage` the part after a dot (AutoAttack's
    stages, only under an evaluation split or none); `kind` "" for a name without one of `KINDS`."""

    split: str
    label: str
    kind: str = ACC
    stage: str = ""
    worst_class: bool = False

    @property
    def name(self) -> str:
        return metric_key(self.split, self.label, self.kind, stage=self.stage, worst_class=self.worst_class)

    @property
    def in_split(self) -> str:
        """The name without its split (`test.pgd20_acc` -> `pgd20_acc`): what the evaluation itself calls it."""
        return metric_key(None, self.label, self.kind, stage=self.stage, worst_class=self.worst_class)

    @property
    def is_accuracy(self) -> bool:
        """An accuracy over all points of one label (clean, an attack, worst): not a stage, not a worst class."""
        return self.kind == ACC and not self.stage and not self.worst_class


def selection_split(selection: str) -> str:
    """The split a checkpoint selection's evaluation is logged under: `last` -> `test`, `best-val` -> `best_val`."""
    return SELECTION_SPLITS[selection]


def metric_key(
    split: str | None,
    label: str,
    kind: str = ACC,
    *,
    stage: str = "",
    worst_class: bool = False,
    selection: str | None = None,
) -> str:
    """A metric name: `metric_key("test", "fast")` -> `test.fast_acc`, `metric_key(None, "fast")` -> `fast_acc` (an
    evaluation's own), `metric_key("val", "seconds", kind="")` -> `val.seconds`, `stage="apgd-ce"` ->
    `strong.apgd-ce_acc`, `worst_class=True` -> `worst_class_fast_acc`; `selection` (instead of `split`) names the
    split by its checkpoint selection (`best-val` -> `best_val.`)."""
    split = selection_split(selection) if selection is not None else split or ""
    name = (WORST_CLASS if worst_class else "") + label + (f".{stage}" if stage else "") + (f"_{kind}" if kind else "")
    return f"{split}.{name}" if split else name


def parse_metric_key(name: str) -> MetricKey | None:
    """The parts of a metric name (`metric_key`'s inverse: `parse_metric_key(n).name == n`); None for a name
    with an empty label or stage (`test.`, `test.aa._acc`)."""
    head, dot, rest = name.partition(".")
    split, rest = (head, rest) if dot and head in SPLITS else ("", name)
    stem, _, suffix = rest.rpartition("_")
    kind = suffix if stem and suffix in KINDS else ""
    body = stem if kind else rest
    label, stage = body, ""
    if split in ("", *EVALUATION_SPLITS) and "." in body:
        label, _, stage = body.partition(".")
    worst_class = bool(kind) and label.startswith(WORST_CLASS) and len(label) > len(WORST_CLASS)
    if worst_class:
        label = label[len(WORST_CLASS) :]
    key = MetricKey(split, label, kind, stage, worst_class)
    return key if label and key.name == name else None


def with_split(split: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluation's metrics (`pgd20_acc`) as logged under `split` (`test.pgd20_acc`)."""
    return {f"{split}.{name}": value for name, value in metrics.items()}


def metric_column(name: str) -> str:
    """The column of a metric in a `search_runs` DataFrame: `metrics.test.pgd20_acc`."""
    return f"metrics.{name}"


# Per-attack measures of the transferability to the teacher (`rkdbench.evaluation.transfer`): TAS, TAS on the points
# both classify correctly when clean, the teacher's accuracy on the student's adversarial points
MEASURE_TAS, MEASURE_TAS_CLEAN, MEASURE_TEACHER_ADV_ACC = "transferability", "transferability_clean", "teacher_adv_acc"


def metric_of_column(column: str) -> str | None:
    """The metric of a `search_runs` DataFrame column (`metrics.test.pgd20_acc` -> `test.pgd20_acc`), else None."""
    head, dot, name = str(column).partition(".")
    return name if dot and head == "metrics" and name else None


def attack_measure_key(measure: str, label: str, split: str = "") -> str:
    """A per-attack measure of an evaluation that is not an accuracy: `transferability.pgd20` (`test.` with `split`)."""
    return f"{split}.{measure}.{label}" if split else f"{measure}.{label}"


# The fixed names the engine, the selections and the diagnostics log
VAL_CLEAN_ACC, VAL_PGD_ACC = metric_key("val", "clean"), metric_key("val", "pgd")
VAL_SECONDS = metric_key("val", "seconds", kind="")
TRAIN_LR, TRAIN_LOSS = metric_key("train", "lr", kind=""), metric_key("train", "loss", kind="")
TRAIN_EPOCH_SECONDS, TRAIN_SECONDS = metric_key("train", "epoch", SECONDS), metric_key("train", "seconds", kind="")
TRIAL_EPOCHS = metric_key("trial", "epochs", kind="")  # the epochs a tuning trial trained (fewer when pruned)
TEST_N_EXAMPLES = metric_key("test", "n_examples", kind="")
TEST_BATCH_SIZE = metric_key("test", "batch_size", kind="")
BEST_VAL_EPOCH = metric_key("best_val", "epoch", kind="")
SWA_N_AVERAGED = metric_key("swa", "n_averaged", kind="")
DIAG_ECE_CLEAN, DIAG_ECE_ADV = metric_key("diag", "ece_clean", kind=""), metric_key("diag", "ece_adv", kind="")
