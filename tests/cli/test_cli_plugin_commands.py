"""Plugin commands (`register_commands`): a loose `--plugins-dir` plugin's command is listed by `--help` and runs
(the real console entry point, in a subprocess), an entry-point plugin's command is seen by click's CliRunner,
a command leaves with its plugin, and a plugin cannot replace a built-in command."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import click
from click.testing import CliRunner

import rkdbench
from rkdbench import plugins
from rkdbench.cli import cli
from support.cli import cli_subprocess

HELLO_PLUGIN = '''
import click
import rkdbench

@rkdbench.hookimpl
def register_commands(cli):
    @cli.command("{name}")
    @click.option("--who", default="world")
    def hello(who):
        """Say hello from a plugin."""
        click.echo(f"hello {{who}} from {name}")
'''


def _write_plugin(folder: Path, module: str, command: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(HELLO_PLUGIN.format(name=command))
    return folder


def _rkdbench(*args: str) -> subprocess.CompletedProcess:
    return cli_subprocess(*args, env={"COLUMNS": "120"}, timeout=300)


def test_loose_plugin_command_is_listed_and_runs(tmp_path):
    folder = _write_plugin(tmp_path / "loose", "greeter", "loose-hello")
    listed = _rkdbench("--plugins-dir", str(folder), "--help")
    assert listed.returncode == 0, listed.stderr
    assert "loose-hello" in listed.stdout and "Say hello from a plugin." in listed.stdout
    assert "run " in listed.stdout  # the built-in commands are still there
    ran = _rkdbench(f"--plugins-dir={folder}", "loose-hello", "--who", "tester")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hello tester from loose-hello\n"
    unknown = _rkdbench("loose-hello")  # without the folder the command does not exist: click's usage error
    assert unknown.returncode == 2 and "No such command 'loose-hello'" in unknown.stderr


def test_entry_point_plugin_command_is_seen_by_cli_runner(tmp_path, monkeypatch):
    _write_plugin(tmp_path / "site", "rkd_cmd_plugin_test", "ep-hello")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    real = list(plugins.entry_points(group="rkdbench"))
    extra = EntryPoint(name="cmd-plugin-test", value="rkd_cmd_plugin_test", group="rkdbench")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*real, extra])
    plugins.reset(keep_plugins=False)
    try:
        runner = CliRunner()
        listed = runner.invoke(cli, ["--help"])
        assert listed.exit_code == 0, listed.output
        assert "ep-hello" in listed.output
        ran = runner.invoke(cli, ["ep-hello", "--who", "runner"])
        assert ran.exit_code == 0, ran.output
        assert ran.output == "hello runner from ep-hello\n"
        assert plugins.plugin_origin("cmd-plugin-test")[0] != "(registered)"  # it came in as an entry point
    finally:
        monkeypatch.undo()
        plugins.reset(keep_plugins=False)
        sys.modules.pop("rkd_cmd_plugin_test", None)
    assert "ep-hello" not in CliRunner().invoke(cli, ["--help"]).output  # gone with its plugin


class Shadowing:
    """A plugin that tries to replace the built-in `run` and adds `extra`."""

    @rkdbench.hookimpl
    def register_commands(self, cli):
        @cli.command("run")
        def fake_run():
            click.echo("not the real run")

        @cli.command("extra")
        def extra():
            click.echo("extra ran")


def test_registered_plugin_adds_commands_but_cannot_replace_a_builtin(register_plugin):
    register_plugin(Shadowing(), "shadowing")
    runner = CliRunner()
    assert runner.invoke(cli, ["extra"]).output == "extra ran\n"
    assert cli.get_command(click.Context(cli), "run").callback.__module__ == "rkdbench.cli.run"
    assert "extra" not in cli.commands  # plugin commands are never added to the group itself
