"""Config files as plain values: reading TOML, finding built-in protocols and suites, `--set` parsing, writing the
resolved config back as TOML, and the canonical hash that identifies configs and cells.
Only plain values are read: nothing in a config file is ever executed or imported."""

from __future__ import annotations

import hashlib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, close_matches
from ..tracking.schema import flatten  # the params flattening is the tracking schema's; kept importable here

__all__ = ["canonical_hash", "read_toml", "builtin_names", "resolve_path", "parse_set", "to_toml", "flatten"]


def canonical_hash(value: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys), truncated: the identity of configs and cells."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def read_toml(path: Path) -> dict[str, Any]:
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


def resolve_path(name_or_path: str, kind: str) -> Path:
    """A `.toml` path as given, or the built-in `kind` ("protocols" / "suites") of that name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{kind[:-1]} file {str(path)!r} does not exist")
        return path
    names = builtin_names(kind)
    if name_or_path not in names:
        raise ConfigError(
            f"unknown {kind[:-1]} {name_or_path!r}{close_matches(name_or_path, names)}; "
            f"built-in {kind}: {', '.join(names)} (or give a path to a .toml file)"
        )
    return Path(str(resources.files("rkdbench") / "configs" / kind / f"{name_or_path}.toml"))


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

    def key(k: str) -> str:  # a bare key, else quoted (`"train.lr"` in [tune.space] is one key, not two)
        return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)

    lines: list[str] = []

    def table(prefix: str, node: dict[str, Any]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars.items())
        if scalars:
            lines.append("")
        for k, v in node.items():
            if isinstance(v, dict):
                table(f"{prefix}.{key(k)}" if prefix else key(k), v)

    table("", data)
    return "\n".join(lines)
