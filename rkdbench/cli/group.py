"""The `rkdbench` click group, which also lists and resolves the commands plugins add.

Plugins add commands through the `register_commands(cli)` hook. The group asks for them whenever click lists or
looks up a command, not once before parsing, so that (1) loose plugins named by `--plugins-dir` count: the group
reads those folders from its own arguments and loads them before click parses the rest (and before `--help`
lists the commands), and (2) `click.testing.CliRunner` sees plugin commands as `rkdbench` does. Each ask hands
the hook a scratch copy of the group, so a plugin registered in one test leaves no command behind; the answer is
cached for as long as the plugin registry is unchanged. A built-in command keeps its name: a plugin command of
the same name is not shown.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

__all__ = ["PluginGroup", "plugins_dir_arguments"]

PLUGINS_DIR = "--plugins-dir"


def plugins_dir_arguments(args: list[str]) -> Iterator[str]:
    """The `--plugins-dir` values among the group's own options (those before the command name)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == PLUGINS_DIR and i + 1 < len(args):
            yield args[i + 1]
            i += 2
            continue
        if arg.startswith(PLUGINS_DIR + "="):
            yield arg.split("=", 1)[1]
        elif arg == "--" or not arg.startswith("-"):
            return  # the command name: what follows is the command's
        i += 1


class PluginGroup(click.Group):
    """A click group whose commands are its own plus those of every loaded plugin."""

    _cached: tuple[object, dict[str, click.Command]] | None = None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from ..plugins import get_registry, load_plugins_dir

        get_registry()  # entry points first, as before: loose files are loaded after them
        for folder in plugins_dir_arguments(args):
            load_plugins_dir(folder)
        return super().parse_args(ctx, args)

    def plugin_commands(self) -> dict[str, click.Command]:
        """Commands added by plugins' `register_commands`, built-in names excluded."""
        from ..plugins import get_registry, pm

        registry = get_registry()  # rebuilt whenever a plugin is loaded or unloaded: the cache key
        if self._cached is None or self._cached[0] is not registry:
            scratch = click.Group(self.name, commands=dict(self.commands))
            pm.hook.register_commands(cli=scratch)
            added = {name: command for name, command in scratch.commands.items() if name not in self.commands}
            self._cached = (registry, added)
        return self._cached[1]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self.plugin_commands().get(cmd_name)
