"""The `rkdbench` command line (click). Every bad input ends with one line on stderr and exit code 2;
a suite with failed cells exits 1 after its summary.

One module per command group: `run` (run, demo), `tune`, `calibrate`, `leaderboard`, `inspect` (compare, evaluate, ui),
`teachers`, `store` (store, server), `scaffold` (plugins, new-plugin, method-docs). A command only turns its
options into a request (a frozen dataclass) and calls the library function that does the work; the group
(`group.PluginGroup`) adds the commands plugins register, `--plugins-dir` ones included.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ..errors import UserError
from . import calibrate, inspect, leaderboard, run, scaffold, store, teachers, tune
from .group import PluginGroup

__all__ = ["cli", "main"]


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="rkdbench")
@click.option(
    "--plugins-dir",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Load every *.py file in this folder as a plugin (repeatable).",
)
def cli(plugins_dir: tuple[str, ...]) -> None:
    """rkdbench: train students from robust teachers with any robust-KD method, attack them with
    AutoAttack under one protocol, track every run in MLflow, and read the leaderboard.

    Start with `rkdbench demo`; `rkdbench run SUITE --dry-run` shows what a suite would train.
    """
    # the folders were loaded by PluginGroup.parse_args, before click parsed them, so their commands exist


for _command in (
    run.run,
    run.demo,
    tune.tune,
    calibrate.calibrate,
    leaderboard.leaderboard,
    inspect.compare,
    inspect.evaluate_command,
    inspect.ui,
    teachers.teachers,
    store.store,
    store.server,
    scaffold.plugins,
    scaffold.method_docs,
    scaffold.new_plugin,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line and exit code 2."""
    # MLflow draws a progress bar for every artifact it reads back (per-example results, configs): noise in logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # nor is "Creating initial MLflow database tables..." when a results folder is first used
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # and, against a tracking server, prints each run's URL to stdout when it ends: noise that breaks --json
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        returned = cli.main(args=argv, prog_name="rkdbench", standalone_mode=False)
    except UserError as exc:
        click.echo(f"rkdbench: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("rkdbench: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(returned if isinstance(returned, int) else 0)
