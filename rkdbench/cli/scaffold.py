"""Plugins and their authors: `rkdbench plugins` (what is registered), `rkdbench new-plugin` (a package to start
from, rkdbench.app.scaffold) and `rkdbench method-docs` (each method's page, rkdbench.app.method_docs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["plugins", "method_docs", "new_plugin"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Every registered component (kind, name, plugin, distribution, version, status) and broken plugins."""
    from ..plugins import broken_plugins, get_registry

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


@click.command("method-docs")
@click.option("--out", default="docs/methods", show_default=True, help="Folder for one Markdown page per method.")
def method_docs(out) -> None:
    """Write each registered method's page (formula, source, defaults, attack) generated from its code."""
    from ..app.method_docs import write_method_pages

    for path in write_method_pages(Path(out)):
        click.echo(f"wrote {path}")


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder the package folder NAME/ is created in.",
)
@click.option("--method", "method", default=None, help="The method's registry name (default: NAME).")
def new_plugin(name: str, parent: str, method: str | None) -> None:
    """Scaffold a pip-installable method plugin in DIR/NAME/: pyproject.toml with the entry point, a working
    RSLAD-like method to edit, its unit test, a README and a digits suite running it next to pgd-at."""
    from ..app.scaffold import new_plugin as scaffold_new_plugin

    click.echo(scaffold_new_plugin(Path(parent), name, method))
