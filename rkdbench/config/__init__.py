"""Protocols and suites as TOML: typed loading, validation, `--set` overrides, hashing, and cells.

The typed API: `load_protocol(name)` returns a `Protocol` whose sections are frozen dataclasses, read as attributes
(`protocol.train.epochs`, `protocol.eval.n_examples`, `protocol.threat.eps`, `protocol.inputs.augment` for [data],
`protocol.header.dataset` for [protocol], `protocol.resources.cpus_per_cell`); each field is declared once in
`config/protocol.py` (type, default, allowed values). `protocol.data` is the canonical table that identities hash
(`protocol.hash`, `Cell.key`, logged params), never read for values. Modules: `fields` (the declaration machinery),
`files` (TOML in and out, hashing), `attack_entry` (`protocol.eval.attacks`: label -> `AttackEntry`), `protocol`,
`suite`.
"""

from __future__ import annotations

from .attack_entry import AttackEntry, attack_entries
from .fields import Section
from .files import builtin_names, canonical_hash, flatten, parse_set, read_toml, resolve_path, to_toml
from .protocol import (
    DataConfig,
    EvalConfig,
    HeaderConfig,
    Protocol,
    ResourcesConfig,
    ThreatConfig,
    TrainConfig,
    load_protocol,
)
from .suite import Cell, Suite, SuiteTable, load_suite

__all__ = [
    "Protocol",
    "Suite",
    "Cell",
    "load_protocol",
    "load_suite",
    "parse_set",
    "builtin_names",
    "canonical_hash",
    "flatten",
    "to_toml",
    "read_toml",
    "resolve_path",
    "Section",
    "HeaderConfig",
    "ThreatConfig",
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "ResourcesConfig",
    "SuiteTable",
    "AttackEntry",
    "attack_entries",
]
