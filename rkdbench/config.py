"""Protocols and suites as TOML: loading, schema validation, `--set` overrides, hashing, and cell expansion.

A protocol fixes everything but the method (data, threat, teacher, budget, evaluation); a suite lists
methods x students x teachers x seeds under one protocol. Every error names the file, the field, the bad
value and what is allowed (with close matches), and is raised before anything is trained or recorded.
Only plain values are read from TOML: nothing in a config file is ever executed or imported.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .attacks import check_threat
from .errors import ConfigError, close_matches

__all__ = [
    "Protocol",
    "Suite",
    "Cell",
    "load_protocol",
    "load_suite",
    "parse_set",
    "builtin_names",
    "canonical_hash",
]

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    check: Check = lambda v: True
    allowed: str = ""


def _positive(v: Any) -> bool:
    return v > 0


def _non_negative(v: Any) -> bool:
    return v >= 0


def _choice(*options: str) -> Field:
    return Field(str, lambda v: v in options, ", ".join(options))


NUMBER = (int, float)
PROTOCOL_SCHEMA: dict[str, dict[str, Field]] = {
    "protocol": {
        "name": Field(str),
        "version": Field(int, _positive, "a positive integer"),
        "description": Field(str),
        "dataset": Field(str),
        "teacher": Field(str),
        "data_root": Field(str),
    },
    "threat": {"norm": _choice("Linf", "L2"), "eps": Field(NUMBER, _positive, "a number > 0")},
    "data": {
        "split_seed": Field(int, _non_negative, "an integer >= 0"),
        "augment": _choice("none", "pad1-crop", "pad4-crop-flip", "strong"),
    },
    "train": {
        "epochs": Field(int, _positive, "an integer >= 1"),
        "batch_size": Field(int, _positive, "an integer >= 1"),
        "optimizer": _choice("sgd", "adam"),
        "lr": Field(NUMBER, _positive, "a number > 0"),
        "momentum": Field(NUMBER, _non_negative, "a number >= 0"),
        "nesterov": Field(bool),
        "weight_decay": Field(NUMBER, _non_negative, "a number >= 0"),
        "schedule": _choice("constant", "piecewise", "cosine"),
        "milestones": Field(list, lambda v: all(isinstance(m, int) and m > 0 for m in v), "a list of epochs >= 1"),
        "gamma": Field(NUMBER, _positive, "a number > 0"),
        "val_pgd_steps": Field(int, _positive, "an integer >= 1"),
        "device": _choice("auto", "cpu", "cuda"),
        # optional (absent = fp32 / contiguous, so older protocols keep their hash); "auto" = on for CUDA only
        "precision": _choice("auto", "fp32", "bf16"),
        "channels_last": _choice("auto", "on", "off"),
        # optional: stochastic weight averaging from this 0-based epoch on, evaluated as the `swa` selection
        "swa_start": Field(int, _non_negative, "an integer >= 0 (a 0-based epoch)"),
        "compile": Field(bool),  # optional, absent = off: torch.compile of the networks while training
    },
    "eval": {
        "n_examples": Field(int, _non_negative, "an integer >= 0 (0 = the whole test split)"),
        "batch_size": Field(int, _non_negative, "an integer >= 1, or 0 = chosen from free memory on CUDA"),
        "seed": Field(int, _non_negative, "an integer >= 0"),
        "selections": Field(list, lambda v: set(v) <= {"last", "best-val", "swa"} and "last" in v,
                            "a list of 'last', 'best-val' and 'swa', containing 'last'"),
        "attacks": Field(dict),
        # optional: absent from a protocol means the default, so existing protocols keep their hash
        "chunk_size": Field(int, _non_negative, "an integer >= 0 (0 = all test points in one chunk)"),
        "diagnostics": Field(bool),
    },
}
# How many accelerators and cores one cell asks a scheduler for (the Ray executor). Kept out of `Protocol.data`:
# where a cell runs never changes what it computes, so it is part of neither the protocol hash nor the cell key.
RESOURCES_SCHEMA: dict[str, Field] = {
    "gpus_per_cell": Field(NUMBER, _non_negative, "a number >= 0 (fractions such as 0.25 share a GPU)"),
    "cpus_per_cell": Field(int, _positive, "an integer >= 1 (also torch's thread count in the worker)"),
}
SUITE_SCHEMA: dict[str, Field] = {
    "name": Field(str),
    "description": Field(str),
    "protocol": Field(str),
    "methods": Field(list, lambda v: len(v) > 0 and all(isinstance(m, str) for m in v), "a non-empty list of method names"),
    "students": Field(list, lambda v: len(v) > 0 and all(isinstance(m, str) for m in v), "a non-empty list of architecture names"),
    "teachers": Field(list, lambda v: len(v) > 0 and all(isinstance(m, str) for m in v), "a non-empty list of teacher ids"),
    "seeds": Field(list, lambda v: len(v) > 0 and all(isinstance(s, int) and s >= 0 for s in v), "a non-empty list of integers >= 0"),
    "set": Field(dict),
    "method_params": Field(dict),
    "teacher_roles": Field(dict, lambda v: all(isinstance(t, str) for t in v.values()),
                           "a table of role = teacher id (e.g. natural = \"...\")"),
}


def canonical_hash(value: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys), truncated: the identity of configs and cells."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def builtin_names(kind: str) -> list[str]:
    """Names of the protocols or suites shipped as package data."""
    folder = resources.files("rkdbench") / "configs" / kind
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _resolve_path(name_or_path: str, kind: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{kind[:-1]} file {str(path)!r} does not exist")
        return path
    names = builtin_names(kind)
    if name_or_path not in names:
        raise ConfigError(f"unknown {kind[:-1]} {name_or_path!r}{close_matches(name_or_path, names)}; "
                          f"built-in {kind}: {', '.join(names)} (or give a path to a .toml file)")
    return Path(str(resources.files("rkdbench") / "configs" / kind / f"{name_or_path}.toml"))


def _check_field(where: str, key: str, value: Any, spec: Field) -> None:
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    type_ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not type_ok or not spec.check(value):
        allowed = spec.allowed or " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {key} = {value!r} is not allowed; allowed: {allowed}")


def _validate_table(where: str, prefix: str, table: Any, schema: dict[str, Field]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{prefix}] must be a table")
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(f"{where}: unknown field {prefix}.{key}{close_matches(key, schema)}; "
                              f"allowed in [{prefix}]: {', '.join(schema)}")
        _check_field(where, f"{prefix}.{key}", value, schema[key])


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse `--set key=value` strings; values are TOML literals (1, 0.1, "x", [0, 1], true), else plain strings."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. train.epochs=1")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        parsed[key.strip()] = value
    return parsed


@dataclass(frozen=True)
class Protocol:
    """A validated, resolved protocol: `data` is the full nested table; `hash` identifies it exactly."""

    name: str
    data: dict[str, Any]
    source: str
    overrides: dict[str, Any]
    resources: dict[str, Any] = field(default_factory=dict)  # [resources]: scheduling only, not hashed

    @property
    def hash(self) -> str:
        return canonical_hash(self.data)

    @property
    def experiment_name(self) -> str:
        """One MLflow experiment per protocol; an overridden protocol is a different one (`name@hash`)."""
        return self.name if not self.overrides else f"{self.name}@{self.hash[:8]}"

    def section(self, name: str) -> dict[str, Any]:
        return self.data[name]


def _apply_protocol_overrides(data: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] not in data:
            raise ConfigError(f"{where}: unknown field {dotted}{close_matches(parts[0], data)}; "
                              f"protocol sections: {', '.join(data)}")
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
    path = _resolve_path(name_or_path, "protocols")
    raw = _read_toml(path)
    source = str(path)
    overrides = dict(overrides or {})
    resources = _split_resources(source, raw, overrides, where)
    for section, table in raw.items():
        if section not in PROTOCOL_SCHEMA:
            sections = [*PROTOCOL_SCHEMA, "resources"]
            raise ConfigError(f"{source}: unknown section [{section}]{close_matches(section, sections)}; "
                              f"allowed: {', '.join(sections)}")
        _validate_table(source, section, table, PROTOCOL_SCHEMA[section])
    for section, table in PROTOCOL_SCHEMA.items():
        missing = [k for k in table if k not in raw.get(section, {}) and k not in OPTIONAL_FIELDS]
        if missing:
            raise ConfigError(f"{source}: missing field(s) {', '.join(f'{section}.{k}' for k in missing)}")
    data = copy.deepcopy(raw)
    _apply_protocol_overrides(data, overrides, where)
    for section, table in data.items():
        _validate_table(f"{source} (after {where})" if overrides else source, section, table, PROTOCOL_SCHEMA[section])
    check_threat(data["threat"]["norm"], data["threat"]["eps"], where=f"{source}: threat")
    _validate_eval_attacks(source, data["eval"]["attacks"])
    _validate_swa(source, data["train"], data["eval"]["selections"])
    return Protocol(name=data["protocol"]["name"], data=data, source=source, overrides=overrides, resources=resources)


def _split_resources(source: str, raw: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """Take [resources] out of the TOML and `resources.*` out of the overrides (both in place), validated."""
    resources = raw.pop("resources", {})
    _validate_table(source, "resources", resources, RESOURCES_SCHEMA)
    resources = dict(resources)
    for dotted in [k for k in overrides if k.split(".")[0] == "resources"]:
        value = overrides.pop(dotted)
        _validate_table(where, "resources", {dotted.partition(".")[2]: value}, RESOURCES_SCHEMA)
        resources[dotted.partition(".")[2]] = value
    return resources


OPTIONAL_FIELDS = {"description", "data_root", "milestones", "gamma", "nesterov", "device", "teacher", "chunk_size",
                   "diagnostics", "precision", "channels_last", "swa_start", "compile"}


def _validate_swa(where: str, train: dict[str, Any], selections: list[str]) -> None:
    start = train.get("swa_start")
    if ("swa" in selections) != (start is not None):
        raise ConfigError(f"{where}: eval.selections contains 'swa' exactly when train.swa_start is set "
                          f"(selections {selections}, swa_start {start})")
    if start is not None and start >= train["epochs"]:
        raise ConfigError(f"{where}: train.swa_start = {start} must be below train.epochs = {train['epochs']}")


def _validate_eval_attacks(where: str, attacks: dict[str, Any]) -> None:
    if not attacks:
        raise ConfigError(f"{where}: [eval.attacks] must name at least one attack")
    for label, spec in attacks.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("attack"), str):
            raise ConfigError(f"{where}: eval.attacks.{label} must be a table with an `attack` plugin name")


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

    @property
    def key(self) -> str:
        return canonical_hash({
            "protocol": self.protocol.data, "method": self.method, "method_params": self.method_params,
            "method_version": self.method_version, "student": self.student, "teacher": self.teacher, "seed": self.seed,
            **({"extra_teachers": self.extra_teachers} if self.extra_teachers else {}),
        })

    @property
    def variant(self) -> str:
        """The method's name as shown on leaderboards, with non-default params: `ard[temperature=1.0]`."""
        changed = self.method_overrides
        return self.method if not changed else f"{self.method}[{','.join(f'{k}={v}' for k, v in sorted(changed.items()))}]"

    @property
    def label(self) -> str:
        extra = "".join(f" + {role}:{name}" for role, name in sorted(self.extra_teachers.items()))
        return f"{self.variant} / {self.student} / {self.teacher}{extra} / seed {self.seed}"


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
    path = _resolve_path(name_or_path, "suites")
    raw = _read_toml(path)
    source = str(path)
    if set(raw) != {"suite"}:
        extra = sorted(set(raw) - {"suite"})
        raise ConfigError(f"{source}: a suite has one table, [suite]; found {', '.join(f'[{s}]' for s in extra) or 'none'}")
    table = raw["suite"]
    _validate_table(source, "suite", table, SUITE_SCHEMA)
    for required in ("name", "protocol", "methods", "students", "seeds"):
        if required not in table:
            raise ConfigError(f"{source}: missing field suite.{required}")
    method_params = {m: dict(p) for m, p in table.get("method_params", {}).items()}
    protocol_set = dict(table.get("set", {}))
    for key, value in (cli_set or {}).items():
        parts = key.split(".")
        if parts[0] == "method":
            if len(parts) != 3:
                raise ConfigError(f"--set {key}: method overrides look like method.<name>.<param>=value")
            method_params.setdefault(parts[1], {})[parts[2]] = value
        else:
            protocol_set[key] = value
    protocol = load_protocol(table["protocol"], protocol_set, where=f"{source} suite.set / --set")
    for method in method_params:
        if method not in table["methods"]:
            raise ConfigError(f"{source}: parameters given for method {method!r}, which the suite does not run "
                              f"(methods: {', '.join(table['methods'])})")
    return Suite(name=table["name"], protocol=protocol, methods=list(table["methods"]), students=list(table["students"]),
                 teachers=list(table["teachers"]) if "teachers" in table else None, seeds=list(table["seeds"]),
                 method_params=method_params, source=source, teacher_roles=dict(table.get("teacher_roles", {})))


def to_toml(data: dict[str, Any]) -> str:
    """Write nested tables of plain values as TOML (for the resolved config artifact; values only, no code)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines: list[str] = []

    def table(prefix: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        lines.extend(f"{json.dumps(k) if not k.replace('_', '').replace('-', '').isalnum() else k} = {value(v)}"
                     for k, v in scalars.items())
        if scalars:
            lines.append("")
        for k, v in node.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(lines)


from .tracking.schema import flatten  # noqa: E402  the params flattening is the tracking schema's; kept importable
