"""The pluggy host: loads entry points of the `rkdbench` group (built-ins included), loose `--plugins-dir`
files and fixture-registered plugins, and collects their registrations into one `Registry`.

Each entry point is loaded, and each plugin's registration hook called, in its own try/except: a broken
plugin is recorded with its error (`rkdbench plugins` lists it) and never stops the host, unless
`RKDBENCH_STRICT_PLUGINS=1`. `RKDBENCH_LOAD_PLUGINS` (comma-separated entry-point names: only these) and
`RKDBENCH_DISABLE_PLUGINS` (these not) filter what is loaded.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import UserError
from .registry import KINDS, Component, Registry

__all__ = [
    "pm",
    "BrokenPlugin",
    "broken_plugins",
    "get_registry",
    "reset",
    "load_plugins_dir",
    "loaded_plugin_dirs",
    "plugin_origin",
    "list_components",
    "create",
]

ENTRY_POINT_GROUP = "rkdbench"
REGISTER_HOOKS = {
    "method": "register_methods",
    "architecture": "register_architectures",
    "attack": "register_attacks",
    "dataset": "register_datasets",
    "teacher": "register_teachers",
    "executor": "register_executors",
}

pm = pluggy.PluginManager("rkdbench")
pm.add_hookspecs(hookspecs.RkdbenchSpec)


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import or to register; `error` is the one-line reason."""

    plugin: str
    dist: str
    error: str
    details: str


_origins: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_load_broken: list[BrokenPlugin] = []  # failed to import: kept as long as the loaded plugins are
_broken: list[BrokenPlugin] = []  # failed to register: rebuilt with the registry
_entry_points_loaded = False
_registry: Registry | None = None


def _strict() -> bool:
    return os.environ.get("RKDBENCH_STRICT_PLUGINS", "") not in ("", "0", "false", "no")


def _env_names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    return None if value is None else {n.strip() for n in value.split(",") if n.strip()}


def _record_broken(plugin: str, dist: str, exc: BaseException, into: list[BrokenPlugin] | None = None) -> None:
    error = f"{type(exc).__name__}: {exc}"
    if _strict():
        raise UserError(f"plugin {plugin!r} ({dist}) is broken: {error}") from exc
    (_load_broken if into is None else into).append(
        BrokenPlugin(plugin, dist, error, "".join(traceback.format_exception(exc)))
    )
    print(f"rkdbench: warning: plugin {plugin!r} ({dist}) is broken and was skipped: {error}", file=sys.stderr)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    only, disabled = _env_names("RKDBENCH_LOAD_PLUGINS"), _env_names("RKDBENCH_DISABLE_PLUGINS") or set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if (only is not None and ep.name not in only) or ep.name in disabled:
            continue
        dist = ep.dist.name if ep.dist else "unknown"
        version = ep.dist.version if ep.dist else ""
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not take the host down
            _record_broken(ep.name, dist, exc)
            continue
        _origins[ep.name] = (dist, version)


def loaded_plugin_dirs() -> list[str]:
    """The folders `--plugins-dir` loaded plugins from (absolute), for worker processes to load them again."""
    return sorted({str(Path(path).resolve().parent) for source, path in _origins.values() if source == "plugins-dir"})


def load_plugins_dir(directory: str | os.PathLike[str]) -> list[str]:
    """Load every `*.py` file in `directory` as a plugin (datasette's `--plugins-dir`); returns their names."""
    folder = Path(directory)
    if not folder.is_dir():
        raise UserError(f"--plugins-dir {str(folder)!r} is not a directory")
    names = []
    for path in sorted(folder.glob("*.py")):
        name = f"plugins-dir:{path.stem}"
        if pm.has_plugin(name):
            loaded_from = _origins.get(name, ("", ""))[1]
            if Path(loaded_from).resolve() != path.resolve():  # same stem from another folder: say so, never drop it
                _record_broken(
                    name,
                    str(path),
                    UserError(
                        f"a plugin file named {path.name} was already loaded from {loaded_from}; rename one of them"
                    ),
                )
            continue
        spec = None
        try:
            spec = importlib.util.spec_from_file_location(f"rkdbench_plugins_dir_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            # In sys.modules before exec, as importlib's recipe does: dataclasses (and pickling) look the
            # module up by name, and a frozen dataclass under `from __future__ import annotations` fails without it.
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            pm.register(module, name=name)
        except Exception as exc:
            if spec is not None:
                sys.modules.pop(spec.name, None)
            _record_broken(name, str(path), exc)
            continue
        _origins[name] = ("plugins-dir", str(path))
        names.append(name)
    reset(keep_plugins=True)
    return names


def plugin_origin(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a loaded plugin; fixture-registered plugins report ('(registered)', '')."""
    return _origins.get(plugin_name, ("(registered)", ""))


def _build_registry() -> Registry:
    registry = Registry()
    for kind, hook_name in REGISTER_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name
            dist, version = plugin_origin(plugin_name)
            pending: list[Component] = []

            def register(
                obj: Any,
                name: str | None = None,
                *,
                _kind: str = kind,
                _pending=pending,
                _plugin=plugin_name,
                _dist=dist,
                _version=version,
            ) -> None:
                component_name = name or getattr(obj, "name", None)
                if not isinstance(component_name, str) or not component_name:
                    raise TypeError(f"{_kind} {obj!r} has no name: pass name=... or give it a `name` attribute")
                _pending.append(Component(_kind, component_name, obj, _plugin, _dist, _version))

            try:
                impl.function(register)
                for component in pending:
                    registry.add(component)
            except Exception as exc:
                _record_broken(plugin_name, dist, exc, into=_broken)
    return registry


def get_registry() -> Registry:
    """The registry of every loaded plugin's components, built on first use."""
    global _registry
    if _registry is None:
        _load_entry_points()
        _registry = _build_registry()
    return _registry


def broken_plugins() -> list[BrokenPlugin]:
    """Plugins that failed to import (entry points, --plugins-dir files) or to register their components."""
    get_registry()
    return [*_load_broken, *_broken]


def reset(keep_plugins: bool = True) -> None:
    """Forget the built registry (tests call this after registering a temporary plugin)."""
    global _registry, _entry_points_loaded
    _registry = None
    _broken.clear()
    if not keep_plugins:
        for name, _plugin in list(pm.list_name_plugin()):
            pm.unregister(name=name)
        _origins.clear()
        _load_broken.clear()
        _entry_points_loaded = False


assert set(REGISTER_HOOKS) == set(KINDS)


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Names of the registered components of `kind` (method, architecture, attack, dataset, teacher)."""
    return get_registry().names(kind, pattern)


def create(kind: str, name: str, **overrides: Any) -> Any:
    """Instantiate a registered component by name with parameter overrides (unknown names list close matches)."""
    return get_registry().get(kind, name).instantiate(**overrides)
