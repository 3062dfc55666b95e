"""Suites: methods x students x teachers x seeds under one protocol, loaded from TOML with `--set` overrides; `Cell`,
one unit of work, and its key; `TrialSpec`, what makes a cell a tuning trial (`rkdbench tune`), and its key.

`load_suite` checks the whole suite before anything runs: its table (typed, one line per field as in `protocol.py`),
the protocol with the suite's `set` and `--set` overrides, and every method parameter given (name, type and, for a
parameter with a fixed set of choices, the value: the method's `Params` annotation is the one declaration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..plugins import get_registry
from .fields import Check, Section, optional, required
from .files import canonical_hash, read_toml, resolve_path
from .protocol import Protocol, load_protocol

__all__ = ["Cell", "TrialSpec", "trial_key", "Suite", "load_suite"]


def _names(what: str) -> Check:
    return Check(lambda v: len(v) > 0, f"a non-empty list of {what}")


@dataclass(frozen=True, kw_only=True)
class SuiteTable(Section):
    table = "suite"
    name: str = required()
    description: str = optional("")
    protocol: str = required()
    methods: tuple[str, ...] = required(_names("method names"))
    students: tuple[str, ...] = required(_names("architecture names"))
    teachers: tuple[str, ...] | None = optional(None, _names("teacher ids"))  # None: the protocol's teacher
    seeds: tuple[int, ...] = required(Check(lambda v: len(v) > 0 and min(v) >= 0, "a non-empty list of integers >= 0"))
    set: dict[str, Any] = field(default_factory=dict)  # protocol overrides, as `--set`
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    teacher_roles: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "rule": Check(
                lambda v: all(isinstance(t, str) for t in v.values()),
                'a table of role = teacher id (e.g. natural = "...")',
            )
        },
    )


def trial_key(study: str, cell_key: str) -> str:
    """The key of a tuning trial's cell: its configuration's cell key (which holds the sampled values) within its
    study. A trial trains and validates but never reads the test split, so it is not the ordinary cell of that key."""
    return canonical_hash({"kind": "trial", "study": study, "cell": cell_key})


@dataclass(frozen=True)
class TrialSpec:
    """What makes a cell a tuning trial: its study, the Optuna trial that runs it (`number`: not in the key, a retried
    trial has another number and the same cell), the suite's protocol (`home`: its experiment holds the trial runs,
    whatever protocol fields the trial overrides), the metric reported per epoch, the values of every searched
    parameter (tagged on the run), and `reporter`, an object whose `report(epoch, value) -> bool` tells the pruner the
    epoch's objective and answers whether to stop (None: no pruning). The run tier reads only these attributes."""

    study: str
    number: int
    home: Protocol
    objective: str
    values: dict[str, Any] = field(default_factory=dict)
    reporter: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method with its resolved params, a student, a teacher (or 'none') and a seed."""

    protocol: Protocol
    method: str
    method_params: dict[str, Any]
    method_version: str
    student: str
    teacher: str
    seed: int
    suite: str = ""
    method_overrides: dict[str, Any] = field(default_factory=dict)
    extra_teachers: dict[str, str] = field(default_factory=dict)  # non-primary role -> teacher id
    # the method object, built once from `method` and `method_overrides` (`rkdbench.run.cells.method_of`); not part
    # of the key, of equality or of a pickle: a process the cell is sent to rebuilds it after loading its plugins
    built_method: Any = field(default=None, compare=False, repr=False)
    trial: TrialSpec | None = None  # set on a tuning trial's cell (`rkdbench tune`): see `TrialSpec`

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "built_method": None}

    @property
    def key(self) -> str:
        """The identity of the result: a trial's key is its configuration's, within its study (`trial_key`)."""
        key = canonical_hash(
            {
                "protocol": self.protocol.data,
                "method": self.method,
                "method_params": self.method_params,
                "method_version": self.method_version,
                "student": self.student,
                "teacher": self.teacher,
                "seed": self.seed,
                **({"extra_teachers": self.extra_teachers} if self.extra_teachers else {}),
            }
        )
        return key if self.trial is None else trial_key(self.trial.study, key)

    @property
    def home(self) -> Protocol:
        """The protocol whose MLflow experiment holds the cell's run: its own, or a trial's suite protocol."""
        return self.protocol if self.trial is None else self.trial.home

    @property
    def variant(self) -> str:
        """The method's name as shown on leaderboards, with non-default params: `ard[temperature=1.0]`."""
        changed = self.method_overrides
        return (
            self.method if not changed else f"{self.method}[{','.join(f'{k}={v}' for k, v in sorted(changed.items()))}]"
        )

    @property
    def reference_teacher(self) -> str:
        """The teacher that measures this cell's specialization and transfer: its own, else the protocol's ("")."""
        return self.teacher if self.teacher != "none" else self.protocol.header.teacher

    @property
    def label(self) -> str:
        extra = "".join(f" + {role}:{name}" for role, name in sorted(self.extra_teachers.items()))
        trial = "" if self.trial is None else f" / trial {self.trial.number}"
        return f"{self.variant} / {self.student} / {self.teacher}{extra} / seed {self.seed}{trial}"


@dataclass(frozen=True)
class Suite:
    name: str
    protocol: Protocol
    methods: list[str]
    students: list[str]
    teachers: list[str] | None
    seeds: list[int]
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""
    teacher_roles: dict[str, str] = field(default_factory=dict)


def load_suite(name_or_path: str, cli_set: dict[str, Any] | None = None) -> Suite:
    """Load a suite; `cli_set` keys starting with `method.<name>.` override method params, others the protocol."""
    path = resolve_path(name_or_path, "suites")
    raw = read_toml(path)
    source = str(path)
    if set(raw) != {"suite"}:
        extra = sorted(set(raw) - {"suite"})
        raise ConfigError(
            f"{source}: a suite has one table, [suite]; found {', '.join(f'[{s}]' for s in extra) or 'none'}"
        )
    table: SuiteTable = SuiteTable.parse(source, raw["suite"])
    from_file = {m: dict(p) for m, p in table.method_params.items()}
    from_cli: dict[str, dict[str, Any]] = {}
    protocol_set = dict(table.set)
    for key, value in (cli_set or {}).items():
        parts = key.split(".")
        if parts[0] == "method":
            if len(parts) != 3:
                raise ConfigError(f"--set {key}: method overrides look like method.<name>.<param>=value")
            from_cli.setdefault(parts[1], {})[parts[2]] = value
        else:
            protocol_set[key] = value
    protocol = load_protocol(table.protocol, protocol_set, where=f"{source} suite.set / --set")
    method_params = {m: {**from_file.get(m, {}), **from_cli.get(m, {})} for m in [*from_file, *from_cli]}
    for method in method_params:
        if method not in table.methods:
            raise ConfigError(
                f"{source}: parameters given for method {method!r}, which the suite does not run "
                f"(methods: {', '.join(table.methods)})"
            )
    _check_method_params(source, from_file, method_params)
    return Suite(
        name=table.name,
        protocol=protocol,
        methods=list(table.methods),
        students=list(table.students),
        teachers=None if table.teachers is None else list(table.teachers),
        seeds=list(table.seeds),
        method_params=method_params,
        source=source,
        teacher_roles=dict(table.teacher_roles),
    )


def _check_method_params(source: str, from_file: dict[str, dict[str, Any]], merged: dict[str, dict[str, Any]]) -> None:
    """Every method parameter the suite file or `--set` gives, checked against the method's declaration now, so a
    bad name, type or choice stops the run before anything is trained."""
    registry = get_registry()
    for method, params in merged.items():
        method_cls = registry.get("method", method).obj
        try:
            method_cls.resolve_params(from_file.get(method, {}))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        try:
            method_cls.resolve_params(params)
        except ConfigError as exc:
            raise ConfigError(f"{source} (after --set): {exc}") from None
