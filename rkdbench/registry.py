"""The one registry of components (timm's pattern): kind -> name -> `Component`, with the plugin that gave it.

Every kind (method, architecture, attack, dataset, teacher, executor) lives here; lookups of unknown names raise an
error listing close matches, and a second registration of a name is refused with both plugins named.
A name ending in `:` is a family (`timm:`): `get(kind, "timm:resnet50")` returns a component whose object is
the family's factory with `"resnet50"` bound as its first argument, so open-ended model zoos need no listing.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
from dataclasses import dataclass
from typing import Any

from .errors import DuplicateComponentError, UnknownComponentError, close_matches

__all__ = ["KINDS", "Component", "Registry"]

KINDS = ("method", "architecture", "attack", "dataset", "teacher", "executor")


@dataclass(frozen=True)
class Component:
    """A registered thing: its kind, name, the object (class, factory or card) and who registered it."""

    kind: str
    name: str
    obj: Any
    plugin: str
    dist: str
    version: str

    def instantiate(self, **overrides: Any) -> Any:
        """Build the component; classes and factories are called, cards (data) are copied with overrides."""
        if callable(self.obj):
            return self.obj(**overrides)
        return dataclasses.replace(self.obj, **overrides) if overrides else self.obj


class Registry:
    """Components by kind and name; filled by the plugin manager, read by everything else."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    def add(self, component: Component) -> None:
        table = self._components[component.kind]
        existing = table.get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{component.kind} {component.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"({existing.dist}) and by plugin {component.plugin!r} ({component.dist}); rename one of them"
            )
        table[component.name] = component

    def get(self, kind: str, name: str) -> Component:
        if kind not in self._components:
            raise UnknownComponentError(f"unknown component kind {kind!r}; allowed: {', '.join(KINDS)}")
        table = self._components[kind]
        family, colon, member = name.partition(":")
        if name not in table and colon and member and f"{family}:" in table:
            parent = table[f"{family}:"]
            return dataclasses.replace(parent, name=name, obj=functools.partial(parent.obj, member))
        if name not in table:
            allowed = ", ".join(sorted(table)) or "(none registered)"
            raise UnknownComponentError(
                f"unknown {kind} {name!r}{close_matches(name, table)}; registered {kind}s: {allowed}"
            )
        return table[name]

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        self.get_kind_table(kind)
        return sorted(n for n in self._components[kind] if fnmatch.fnmatch(n, pattern))

    def get_kind_table(self, kind: str) -> dict[str, Component]:
        if kind not in self._components:
            raise UnknownComponentError(f"unknown component kind {kind!r}; allowed: {', '.join(KINDS)}")
        return self._components[kind]

    def all(self) -> list[Component]:
        return [c for kind in KINDS for c in self._components[kind].values()]
