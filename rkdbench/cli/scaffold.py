"""Plugins and their authors: `rkdbench plugins` (what is registered, rkdbench.app.plugins), `rkdbench new-plugin` (a
package to start from, rkdbench.app.scaffold) and `rkdbench method-docs` (each method's page, rkdbench.app.method_docs).
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["plugins", "method_docs", "new_plugin"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Every registered component (kind, name, plugin, distribution, version, status) and broken plugins."""
    from ..app.plugins import print_plugins

    print_plugins(as_json)


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
