"""`rkdbench plugins`: every registered component (kind, name, plugin, distribution, version, status) and every
broken plugin with its one-line error, as a table or as JSON."""

from __future__ import annotations

import json

import click

from ..plugins import broken_plugins, get_registry

__all__ = ["print_plugins"]


def print_plugins(as_json: bool) -> None:
    rows = [
        {"kind": c.kind, "name": c.name, "plugin": c.plugin, "dist": c.dist, "version": c.version, "status": "ok"}
        for c in get_registry().all()
    ]
    rows += [
        {
            "kind": "plugin",
            "name": b.plugin,
            "plugin": b.plugin,
            "dist": b.dist,
            "version": "",
            "status": f"broken: {b.error}",
        }
        for b in broken_plugins()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows) if rows else 10
    for r in rows:
        click.echo(f"{r['kind']:<13}{r['name']:<{width + 2}}{r['plugin']:<22}{r['dist']} {r['version']}  {r['status']}")
