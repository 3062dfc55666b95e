"""Publishing a leaderboard table: its files in one folder per protocol experiment (`leaderboard.md`, `.csv`,
`.json`, `.html`, `pareto.png`, `aa_vs_cost.png`, `val_curves.png`, and `budget_curves.png` for a tuned table;
`-best-val` before the extension for the best-val selection), and an MLflow run of kind `leaderboard` in the
protocol's experiment holding the same (`log_table` for the rows, `log_figure` for the plots, the Markdown, HTML
and CSV as artifacts).

A leaderboard run is a snapshot, and it is created only when the table changed: the run is tagged with the
sha256 of the text files, and a build whose digest equals the newest leaderboard run of the same protocol hash and
selection reuses that run. Reusing one run and overwriting it is not an option: MLflow's `log_table` appends
rows to an existing table artifact, and artifact stores cannot delete a file.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_bytes_atomic
from ..tracking import Tracker, git_sha, schema
from .formats import export_frame, to_csv, to_json, to_markdown
from .html import to_html
from .table import Table

__all__ = ["Published", "file_name", "folder_names", "leaderboard_texts", "publish"]

PLOTS = ("pareto", "aa_vs_cost", "val_curves")


@dataclass
class Published:
    """What one table's publication wrote: files, and the leaderboard run (`new_run` False: reused, unchanged)."""

    table: Table
    paths: list[Path] = field(default_factory=list)
    run_id: str | None = None
    new_run: bool = False


def file_name(stem: str, extension: str, selection: str) -> str:
    return f"{stem}{'' if selection == 'last' else '-' + selection}.{extension}"


def folder_names(tables: Sequence[Table]) -> dict[int, str]:
    """A folder per table (keyed by its position): the experiment name, plus `@<hash8>` when one experiment holds
    tables of several protocol hashes (a protocol file edited without a new name)."""
    counts: dict[str, set[str]] = {}
    for table in tables:
        counts.setdefault(table.experiment, set()).add(table.protocol_hash)
    names = {}
    for i, table in enumerate(tables):
        name = table.experiment.replace("/", "_")
        names[i] = name if len(counts[table.experiment]) == 1 else f"{name}@{table.protocol_hash[:8]}"
    return names


def leaderboard_texts(table: Table) -> dict[str, str]:
    """File name -> text of the md, csv, json and html forms; the page shows the plots written beside it."""
    stems = [*PLOTS, *(["budget_curves"] if table.curves else [])]
    plots = [file_name(stem, "png", table.selection) for stem in stems]
    return {
        file_name("leaderboard", "md", table.selection): to_markdown(table),
        file_name("leaderboard", "csv", table.selection): to_csv(table),
        file_name("leaderboard", "json", table.selection): to_json(table),
        file_name("leaderboard", "html", table.selection): to_html([table], plots),
    }


def _digest(texts: dict[str, str]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(texts):
        hasher.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    return hasher.hexdigest()


def _latest_run(tracker: Tracker, experiment_id: str, table: Table):
    runs = tracker.search_runs(
        schema.leaderboard_runs(table.protocol_hash, table.selection),
        [experiment_id],
        order_by=schema.NEWEST_FIRST,
        max_results=1,
    )
    return runs[0] if runs else None


def _log(tracker: Tracker, table: Table, texts: dict[str, str], plots: dict[str, object], digest: str) -> str:
    from .plots import SAVE

    experiment_id = table.experiment_id or tracker.experiment_id(table.experiment)
    run_id = tracker.create_run(
        experiment_id,
        file_name("leaderboard", "md", table.selection)[:-3],
        schema.leaderboard_tags(
            protocol=table.protocol,
            protocol_hash=table.protocol_hash,
            selection=table.selection,
            ranked_by=table.ranked_by,
            rows=len(table.frame),
            digest=digest,
            git_sha=git_sha(),
        ),
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, text in texts.items():
                if name.endswith(".json"):
                    continue  # the rows go in through log_table below, as MLflow's own table artifact
                (Path(folder) / name).write_bytes(text.encode())
                tracker.log_artifact(run_id, Path(folder) / name)
        frame = export_frame(table)
        frame["runs"] = [" ".join(f"{seed}:{run}" for seed, run in runs.items()) for runs in frame["runs"]]
        tracker.log_table(run_id, frame, artifact_file=file_name("leaderboard", "json", table.selection))
        for name, figure in plots.items():
            tracker.log_figure(run_id, figure, name, save_kwargs=SAVE)
    except BaseException:
        tracker.finish(run_id, "FAILED")
        raise
    tracker.finish(run_id, "FINISHED")
    return run_id


def publish(
    table: Table,
    history: Callable[[str], list[tuple[int, float]]],
    folder: Path | None = None,
    tracker: Tracker | None = None,
) -> Published:
    """Write the table's files into `folder` and/or log them as a leaderboard run with `tracker` (reusing the
    newest one when nothing changed)."""
    from .plots import SAVE, figures

    texts = leaderboard_texts(table)
    plots = {file_name(stem, "png", table.selection): figure for stem, figure in figures(table, history).items()}
    published = Published(table)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            write_bytes_atomic(folder / name, text.encode())  # UTF-8 and \n everywhere
            published.paths.append(folder / name)
        for name, figure in plots.items():
            figure.savefig(folder / name, **SAVE)
            published.paths.append(folder / name)
    if tracker is not None:
        digest = _digest(texts)
        latest = _latest_run(tracker, table.experiment_id or tracker.experiment_id(table.experiment), table)
        if (
            latest is not None
            and latest.info.status == "FINISHED"
            and latest.data.tags.get(schema.LEADERBOARD_SHA256) == digest
        ):
            published.run_id = latest.info.run_id
        else:
            published.run_id, published.new_run = _log(tracker, table, texts, plots, digest), True
    return published
