"""`rkdbench leaderboard`: options to a `LeaderboardRequest`, built and written by rkdbench.app.leaderboard."""

from __future__ import annotations

import sys

import click

from .options import MODEL_DIR_HELP, RESULTS_HELP

__all__ = ["leaderboard"]


@click.command()
@click.option("--results", default="rkdbench-results", show_default=True, help=RESULTS_HELP)
@click.option("--protocol", default=None, help="Only this protocol (name); default: every protocol with runs.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["terminal", "md", "csv", "json", "html"]),
    default=None,
    help="What is printed: `terminal` is a compact table in 100 columns (the default on a terminal), `md` "
    "the full Markdown table (the default otherwise); --out writes every format and the plots.",
)
@click.option(
    "--selection",
    type=click.Choice(["last", "best-val", "swa"]),
    default="last",
    show_default=True,
    help="Which checkpoint's numbers: the last epoch, the best validation PGD epoch, or the "
    "weight-averaged student (protocols with train.swa_start).",
)
@click.option(
    "--out",
    default=None,
    help="Also write leaderboard.md/.csv/.json/.html and the PNG plots into OUT/<protocol experiment>/.",
)
@click.option(
    "--log-to-mlflow/--no-log-to-mlflow",
    default=True,
    show_default=True,
    help="Log the leaderboard (table, plots, md, html) as a run of kind `leaderboard` in the protocol's "
    "experiment; a build identical to the newest such run logs nothing new.",
)
@click.option("--model-dir", default=None, help=MODEL_DIR_HELP + " Measured teacher cards give `AA gap to teacher`.")
@click.option(
    "--ui-url",
    default="",
    metavar="URL",
    help="Base URL of the MLflow UI for run links (e.g. http://127.0.0.1:5000 while `rkdbench ui` runs); "
    "default: the UI's own #/experiments/... paths.",
)
@click.option(
    "--tuned",
    is_flag=True,
    help="Print the tuned view: each method's configuration selected by an equal-budget study (rkdbench tune), "
    "with its budget, trials, sampler and selected values. --out writes both views.",
)
@click.option(
    "--references",
    default=None,
    type=click.Path(dir_okay=False),
    help="Published numbers to compare with (TOML; default: the packaged references).",
)
def leaderboard(results, protocol, fmt, selection, out, log_to_mlflow, model_dir, ui_url, tuned, references) -> None:
    """Leaderboards from the MLflow store, one per protocol hash: method x student x teacher, mean ± std over seeds,
    ranked by AutoAttack, with paired ties, the teacher gap, reported numbers, cost, flags and run links."""
    from ..app.leaderboard import LeaderboardRequest, print_leaderboards

    print_leaderboards(
        LeaderboardRequest(
            results,
            fmt or ("terminal" if sys.stdout.isatty() else "md"),
            selection,
            protocol=protocol,
            out=out,
            model_dir=model_dir,
            log_to_mlflow=log_to_mlflow,
            ui_url=ui_url,
            references=references,
            tuned=tuned,
        )
    )
