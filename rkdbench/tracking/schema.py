"""The tracking schema: every name rkdbench writes to or searches in MLflow, in one place.

Tag names are constants (`CELL`, `PROTOCOL_HASH`, ...; `tag(name)` for a name built at run time, e.g. a
selection's flags tag), run kinds are `RunKind.CELL`, `TRIAL`, `STUDY`, `EVALUATION` and `LEADERBOARD`, the tag sets
of each kind are built by `experiment_tags`, `cell_tags` (with `trial_tags` on a tuning trial), `training_tags`,
`study_tags`, `evaluation_tags` and `leaderboard_tags`, params are flattened by `protocol_params`, and the search
filters are built by `runs_filter` (and its named shortcuts `finished_cells`, `cell_runs`, `all_cells`,
`finished_studies`, `finished_evaluations`, `leaderboard_runs`, `RKDBENCH_RUNS`). The strings
are exactly those earlier versions wrote and searched, so stores written before this module read the same; the
documentation of the schema is docs/tracking.md.
"""

from __future__ import annotations

from collections.abc import Mapping
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
TRANSFERABILITY, SPECIALIZATION = tag("transferability"), tag("specialization")
MODEL, MODEL_SHA256, ARCHITECTURE = tag("model"), tag("model_sha256"), tag("architecture")
SELECTION, RANKED_BY = tag("selection"), tag("ranked_by")
LEADERBOARD_ROWS, LEADERBOARD_SHA256 = tag("leaderboard_rows"), tag("leaderboard_sha256")
# tuning (`rkdbench tune`): a trial run's study, Optuna trial number, sampled values and end; a study run's record
STUDY, TRIAL, TRIAL_VALUES, TRIAL_STATE = tag("study"), tag("trial"), tag("trial_values"), tag("trial_state")
SAMPLER, SAMPLER_SEED, OBJECTIVE, PRUNER = tag("sampler"), tag("sampler_seed"), tag("objective"), tag("pruner")
BUDGET, SELECTED_TRIAL, SELECTED_VALUES = tag("budget"), tag("selected_trial"), tag("selected_values")
SELECTED_OVERRIDES, TUNED_CELLS = tag("selected_overrides"), tag("tuned_cells")


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
