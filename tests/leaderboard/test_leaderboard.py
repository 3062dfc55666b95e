"""Leaderboards from fake MLflow cell runs (no training): values equal aggregates computed directly from the runs,
the paired significance marks on a constructed case, attack columns in the protocol's order, cost and teacher-gap
columns, bold on the best, reported numbers joined on a made-up protocol, the JSON, HTML and PNG outputs,
byte-stable regeneration, and the MLflow leaderboard run (logged once per change, never a row)."""

from __future__ import annotations

import io
import json
import os
import re
import statistics

import pandas as pd
import pytest

from rkdbench.config import builtin_names
from rkdbench.errors import ConfigError
from rkdbench.leaderboard import build_tables, collect_runs, config_loader, history_loader, per_example_loader, render
from rkdbench.leaderboard.compare import mcnemar_exact
from rkdbench.leaderboard.plots import pareto_front
from rkdbench.leaderboard.publish import file_name, publish
from rkdbench.leaderboard.references import load_references
from rkdbench.leaderboard.shown import shown
from rkdbench.plugins import list_components
from rkdbench.teachers.accuracy import evaluation_key, teacher_accuracies
from rkdbench.tracking import Tracker
from support.cli import cli
from support.leaderboard_runs import PARAMS, fabricated_run


def _make_store(tmp_path):
    with pytest.MonkeyPatch.context() as env:  # a module-scoped store is made before the autouse env cleanup
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = Tracker(tmp_path / "results")
    experiment = tracker.experiment_id("toy")
    best = [True] * 80 + [False] * 20
    close = [True] * 77 + [False] * 3 + [True] * 1 + [False] * 19  # 3 only-best, 1 only-close
    far = [True] * 50 + [False] * 50  # 30 only-best, 0 only-far
    fabricated_run(
        tracker, experiment, tmp_path, "best", 0, best, seconds=7200.0, params={"protocol.train.device": "cuda"}
    )
    fabricated_run(
        tracker,
        experiment,
        tmp_path,
        "close",
        0,
        close,
        seconds=36.0,
        passes=(11, 11, 10, 10),
        tags={"rkdbench.device": "cuda:0"},
    )
    fabricated_run(tracker, experiment, tmp_path, "far", 0, far, seconds=30.0)
    fabricated_run(
        tracker, experiment, tmp_path, "far", 1, [True] * 60 + [False] * 40, seconds=40.0
    )  # far on seed 1 too: n = 2
    return tracker


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four cell runs, read by the tests that add nothing (a store takes seconds to make on a busy machine)."""
    return _make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture
def own_store(tmp_path):
    """The same runs in a store of the test's own, for tests that add runs to it."""
    return _make_store(tmp_path)


def _table(tracker, **options):
    [table] = build_tables(
        collect_runs(tracker), "last", per_example_loader(tracker), config=config_loader(tracker), **options
    )
    return table


def test_values_are_the_aggregates_of_the_runs(store):
    [table] = build_tables(collect_runs(store), "last")
    frame = table.frame.set_index("method_variant")
    assert list(table.frame["method_variant"]) == ["best", "close", "far"]  # sorted by AutoAttack
    assert frame.loc["far", "n"] == 2 and frame.loc["best", "n"] == 1
    assert frame.loc["far", "aa_mean"] == pytest.approx(statistics.mean([50.0, 60.0]))
    assert frame.loc["far", "aa_std"] == pytest.approx(statistics.stdev([50.0, 60.0]))
    assert pd.isna(frame.loc["best", "aa_std"])
    assert frame.loc["close", "aa_mean"] == pytest.approx(78.0)
    # cost: mean train seconds over seeds, GPU-hours only for a CUDA run, passes per example per epoch summed
    assert frame.loc["far", "train_seconds"] == pytest.approx(35.0)
    assert frame.loc["best", "gpu_hours"] == pytest.approx(2.0) and pd.isna(frame.loc["far", "gpu_hours"])
    assert frame.loc["close", "gpu_hours"] == pytest.approx(0.01)  # from the runner's device tag
    assert frame.loc["close", "passes"] == 42 and frame.loc["close", "teacher_forward"] == 10
    assert set(frame["selection"]) == {"last"}
    assert table.attack_columns == ["clean", "pgd20", "aa"] and table.aa_label == "aa"


def test_rows_not_significantly_different_from_the_best_are_marked(store):
    [table] = build_tables(collect_runs(store), "last", per_example_loader(store))
    p = dict(zip(table.frame["method_variant"], table.frame["p_vs_best"]))
    assert p["best"] == 1.0
    assert p["close"] == pytest.approx(mcnemar_exact(3, 1)) and p["close"] >= 0.05  # a tie
    assert p["far"] == pytest.approx(mcnemar_exact(30, 0)) and p["far"] < 1e-6  # only seed 0 is shared
    text = render(table, "md")
    close_line = next(line for line in text.splitlines() if "| close" in line)
    far_line = next(line for line in text.splitlines() if "| far" in line)
    assert "≈" in close_line and "≈" not in far_line


def test_best_value_of_each_accuracy_column_is_bold(store):
    table = _table(store)
    columns = shown(table)
    assert [c.strong for c in columns["AutoAttack"]] == [True, False, False]
    assert all(c.strong for c in columns["clean"])  # every row at 100.0: ties are all bold
    lines = {line.split("|")[2].strip(): line for line in render(table, "md").splitlines() if line.startswith("| ")}
    assert "**80.0**" in lines["best"] and "**" not in lines["far"].split("|")[9]
    assert "<strong>80.0</strong>" in render(table, "html")


def test_run_links_point_into_the_mlflow_ui(store):
    table = _table(store, ui_url="http://127.0.0.1:5000/")
    runs = table.frame.loc[0, "runs"]
    link = f"http://127.0.0.1:5000/#/experiments/{table.experiment_id}/runs/{runs['0']}"
    assert f"[{runs['0'][:8]}]({link})" in render(table, "md")
    assert _table(store).run_link("abc") == f"#/experiments/{table.experiment_id}/runs/abc"


def test_attack_columns_follow_the_protocol_clean_first_autoattack_last(tmp_path):
    tracker = Tracker(tmp_path / "results")
    experiment = tracker.experiment_id("toy")
    for method, cw in (("a", 0.6), ("b", 0.7)):
        run_id = tracker.create_run(
            experiment,
            method,
            {
                "rkdbench.kind": "cell",
                "rkdbench.protocol": "toy",
                "rkdbench.protocol_hash": "h1",
                "rkdbench.method_variant": method,
                "rkdbench.student": "s",
                "rkdbench.teacher": "none",
                "rkdbench.seed": "0",
            },
        )
        tracker.log_metrics(
            run_id,
            {
                "test.clean_acc": 0.9,
                "test.aa_acc": 0.5,
                "test.pgd20_acc": 0.65,
                "test.cw_acc": cw,
                "test.fgsm_acc": 0.8,
                "test.worst_acc": 0.5,
            },
        )
        config = tmp_path / method / "config.toml"
        config.parent.mkdir()
        config.write_text(
            '[eval.attacks.aa]\nattack = "autoattack"\n[eval.attacks.cw]\nattack = "cw"\n'
            '[eval.attacks.pgd20]\nattack = "pgd"\n[eval.attacks.fgsm]\nattack = "fgsm"\n'
        )
        tracker.log_artifact(run_id, config)
        tracker.finish(run_id, "FINISHED")
    table = _table(tracker)
    assert table.attack_columns == ["clean", "cw", "pgd20", "fgsm", "aa"]
    header = render(table, "md").splitlines()[4]
    assert [h.strip() for h in header.split("|")[7:13]] == ["precision", "clean", "CW", "PGD-20", "fgsm", "AutoAttack"]
    assert table.frame.set_index("method_variant").loc["b", "cw_mean"] == pytest.approx(70.0)
    # without the config.toml artifact: clean, the usual order (pgd20, cw), the rest alphabetically, AutoAttack last
    [fallback] = build_tables(collect_runs(tracker), "last")
    assert fallback.attack_columns == ["clean", "pgd20", "cw", "fgsm", "aa"]


def test_teacher_gap_uses_the_teachers_measured_accuracy_under_the_same_evaluation(own_store):
    store = own_store
    experiment = store.experiment_id("toy@other")
    for eps, aa, hash_ in ((0.1, 0.9, "h-budget"), (0.2, 0.3, "h-eps")):  # the second is newer but another threat
        run_id = store.create_run(
            experiment,
            "evaluate-t",
            {"rkdbench.kind": "evaluation", "rkdbench.teacher": "t", "rkdbench.protocol_hash": hash_},
        )
        store.log_params(run_id, {**PARAMS, "protocol.threat.eps": eps, "protocol.train.epochs": 200})
        store.log_metrics(run_id, {"test.aa_acc": aa})
        store.finish(run_id, "FINISHED")
    teachers = teacher_accuracies(store, ["t"])
    table = _table(store, teachers=teachers)
    frame = table.frame.set_index("method_variant")
    assert frame.loc["best", "teacher_aa"] == pytest.approx(90.0)
    assert frame.loc["far", "aa_gap_to_teacher"] == pytest.approx(55.0 - 90.0)
    assert "AA gap to teacher" in render(table, "md").splitlines()[4]
    assert "t" not in set(collect_runs(store)["method_variant"])  # an evaluation run is never a row
    assert evaluation_key({"protocol.train.epochs": 1, **PARAMS}) == evaluation_key(
        {**PARAMS, "protocol.train.epochs": 9}
    )
    assert evaluation_key({"protocol.train.epochs": 1}) is None


def test_teacher_accuracy_from_the_measured_card(tmp_path):
    import json

    teacher = "digits/Linf/rkdbench-cnn-large"
    card = tmp_path / "models" / "digits" / "Linf" / "rkdbench-cnn-large.json"
    card.parent.mkdir(parents=True)
    card.write_text(
        json.dumps(
            {
                "id": teacher,
                "evaluations": {"h1": {"protocol": "not-a-protocol", "aa_acc": 0.5, "clean_acc": 0.9, "flags": []}},
            }
        )
    )
    found = teacher_accuracies(None, [teacher, "none"], tmp_path / "models")
    assert found.find(teacher, "h1", None, "aa") == pytest.approx(50.0)
    assert found.find(teacher, "h2", "some-key", "aa") is None


REFERENCES = """
[[reference]]
protocols = ["toy"]
method = "best"
student = "cnn-small"
teacher = "t"
clean = 99.0
aa = 75.5
tag = "R"
citation = "Someone et al., 2099"
source = "Table 1"

[[reference]]
protocols = ["another-protocol"]
method = "far"
student = "cnn-small"
teacher = "t"
aa = 10.0
tag = "S"
citation = "Other et al."
source = "a blog"
"""


def test_reported_numbers_are_joined_into_their_protocols_leaderboard(store, tmp_path):
    path = tmp_path / "references.toml"
    path.write_text(REFERENCES)
    table = _table(store, references=load_references(path))
    frame = table.frame.set_index("method_variant")
    assert frame.loc["best", "reported_aa"] == 75.5 and frame.loc["best", "delta_aa"] == pytest.approx(80.0 - 75.5)
    assert pd.isna(frame.loc["far", "reported_aa"]) and pd.isna(frame.loc["far", "delta_aa"])  # another protocol's
    assert [r.method for r in table.references] == ["best"]
    text = render(table, "md")
    best_line = next(line for line in text.splitlines() if line.startswith("| 1 "))
    assert "75.50 [R]" in best_line and "+4.5" in best_line
    assert "- best / cnn-small / t: AA 75.50 [R] Someone et al., 2099; Table 1" in text
    csv = pd.read_csv(io.StringIO(render(table, "csv")))
    assert csv.loc[0, "delta_aa"] == pytest.approx(4.5)
    # no reference for this protocol (as for digits): no reported columns at all
    plain = _table(store, references=[])
    assert "reported_aa" not in plain.frame and "reported AA" not in render(plain, "md")
    assert "reported_aa" not in _table(store).frame  # the packaged references are for other protocols


def test_packaged_references_load_with_provenance():
    references = load_references()
    assert {r.method for r in references} >= {"pgd-at", "trades", "ard", "rslad", "iad", "adaad"}
    assert all(r.tag and r.citation and r.source and "cifar10-linf-8" in r.protocols for r in references)
    protocols = {p for r in references for p in r.protocols}
    assert protocols <= set(builtin_names("protocols")), "a reference names a protocol that does not exist"
    assert {r.student for r in references} <= set(list_components("architecture"))
    rslad = next(r for r in references if r.method == "rslad")
    assert (rslad.accuracies["clean"], rslad.reported, rslad.tag) == (83.38, 51.49, "R")
    assert rslad.accuracies["pgd20"] == 54.24 and rslad.final == "aa"  # the final attack's key, as AutoAttack declares
    assert rslad.protocols == ("cifar10-linf-8", "cifar10-linf-8-paper-rslad")


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            'protocols = ["p"]\nmethod = "m"\nstudent = "s"\nteacher = "t"\naa = 50\n'
            'tag = "X"\ncitation = "c"\nsource = "s"',
            "tag = 'X' is not allowed",
        ),
        (
            'protocols = ["p"]\nmethod = "m"\nstudent = "s"\nteacher = "t"\naa = 150\n'
            'tag = "V"\ncitation = "c"\nsource = "s"',
            "aa = 150 is not allowed",
        ),
        (
            'protocols = ["p"]\nmethod = "m"\nstudent = "s"\naa = 50\n'
            'tag = "V"\ncitation = "c"\nsource = "s"\nyear = 1',
            "unknown field(s) year; missing field(s) teacher",
        ),
        # the accuracies' keys are `clean` and the labels the attack plugins declare; AutoAttack's, the final
        # attack's, is the one a reference must give
        (
            'protocols = ["p"]\nmethod = "m"\nstudent = "s"\nteacher = "t"\npgd20 = 50\npgd10 = 52\n'
            'tag = "V"\ncitation = "c"\nsource = "s"',
            "unknown field(s) pgd10; missing field(s) aa; allowed: protocols, method, student, teacher, tag, "
            "citation, source, note, clean, aa, cw, pgd20",
        ),
    ],
)
def test_bad_references_are_refused(tmp_path, entry, message):
    path = tmp_path / "references.toml"
    path.write_text(f"[[reference]]\n{entry}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_references(path)
    valid = (
        'protocols = ["p", "q"]\nmethod = "m"\nstudent = "s"\nteacher = "t"\naa = 50\n'
        'tag = "V"\ncitation = "c"\nsource = "s"'
    )
    path.write_text(f"[[reference]]\n{valid}\n[[reference]]\n{valid}\n")
    with pytest.raises(ConfigError, match="references 1 and 2 are both for p / m / s / t"):
        load_references(path)


def test_json_parses_and_matches_the_table(store):
    table = _table(store)
    document = json.loads(render(table, "json"))
    assert (document["protocol"], document["protocol_hash"], document["selection"]) == ("toy", "h1", "last")
    assert document["attacks"] == ["clean", "pgd20", "aa"]
    rows = document["rows"]
    assert [r["method_variant"] for r in rows] == list(table.frame["method_variant"])
    for row, (_, expected) in zip(rows, table.frame.iterrows()):
        assert row["runs"] == expected["runs"] and row["n"] == expected["n"]
        for column in (
            "aa_mean",
            "aa_std",
            "clean_mean",
            "pgd20_mean",
            "train_seconds",
            "gpu_hours",
            "passes",
            "p_vs_best",
        ):
            assert (
                row[column] is None
                if pd.isna(expected[column])
                else row[column] == pytest.approx(expected[column], abs=1e-4)
            )
    csv = pd.read_csv(io.StringIO(render(table, "csv")))
    assert set(csv.columns) == set(rows[0])  # the same columns in both
    assert list(csv["aa_mean"]) == pytest.approx([r["aa_mean"] for r in rows])


def test_html_page_is_self_contained_and_sortable(store):
    table = _table(store)
    page = render(table, "html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>" in page and 'addEventListener("click"' in page and "<style>" in page
    assert not re.search(r"https?://", page)  # nothing fetched, no absolute link
    assert page.count("<tr>") == 1 + len(table.frame)
    for method in ("best", "close", "far"):
        assert f'<td data-sort="{method}">{method}</td>' in page
    assert 'data-sort="55"' in page  # far's AutoAttack mean: cells sort by their number, not "55.0 ± 7.1"


def test_published_files_plots_and_byte_stable_regeneration(store, tmp_path):
    from matplotlib.image import imread

    first = publish(_table(store), history_loader(store), tmp_path / "a").paths
    second = publish(_table(store), history_loader(store), tmp_path / "b").paths
    names = [p.name for p in first]
    assert names == [
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.json",
        "leaderboard.html",
        "pareto.png",
        "aa_vs_cost.png",
        "val_curves.png",
    ]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name  # PNGs too: no timestamp (on one machine and matplotlib)
        if a.suffix == ".png":
            pixels = imread(a)
            assert pixels.shape[:2] == (480, 640) and pixels[..., :3].std() > 0, a.name
    assert 'src="pareto.png"' in (tmp_path / "a" / "leaderboard.html").read_text()
    assert file_name("leaderboard", "md", "best-val") == "leaderboard-best-val.md"  # both selections share a folder


def test_pareto_front():
    points = [(99.0, 77.5), (97.5, 74.5), (99.5, 11.0), (76.5, 27.5), (99.0, 77.5), (float("nan"), 90.0)]
    assert pareto_front(points) == [0, 4, 2]


def test_leaderboard_command_writes_files_and_logs_one_run_per_change(own_store, tmp_path, capsys, monkeypatch):
    store = own_store
    results, out = str(store.results), tmp_path / "boards"
    assert cli("leaderboard", "--results", results, "--out", str(out)) == 0
    assert "| best " in capsys.readouterr().out
    folder = out / "toy"
    assert {p.name for p in folder.iterdir()} == {
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.json",
        "leaderboard.html",
        "pareto.png",
        "aa_vs_cost.png",
        "val_curves.png",
    }
    client = store.client
    experiment = client.get_experiment_by_name("toy").experiment_id
    [run] = client.search_runs([experiment], "tags.`rkdbench.kind` = 'leaderboard'")
    assert run.info.status == "FINISHED" and run.data.tags["rkdbench.protocol_hash"] == "h1"
    assert run.data.tags["rkdbench.selection"] == "last"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "leaderboard.md",
        "leaderboard.html",
        "leaderboard.csv",
        "leaderboard.json",
        "pareto.png",
        "aa_vs_cost.png",
        "val_curves.png",
    } <= artifacts
    # MlflowClient.load_table finds its runs through MLflow's process-wide tracking URI, not the client's store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    logged = client.load_table(experiment, "leaderboard.json", run_ids=[run.info.run_id])
    assert list(logged["method_variant"]) == ["best", "close", "far"]
    # the leaderboard run is never a row, and an unchanged rebuild logs nothing new
    assert len(collect_runs(store)) == 4
    assert cli("leaderboard", "--results", results, "--format", "csv") == 0
    assert "unchanged since leaderboard run" in capsys.readouterr().err
    assert len(client.search_runs([experiment], "tags.`rkdbench.kind` = 'leaderboard'")) == 1
    # without logging nothing is added even when the table changed (another base URL for the run links)
    assert (
        cli(
            "leaderboard",
            "--results",
            results,
            "--no-log-to-mlflow",
            "--ui-url",
            "http://127.0.0.1:5000",
            "--out",
            str(tmp_path / "again"),
        )
        == 0
    )
    assert len(client.search_runs([experiment], "tags.`rkdbench.kind` = 'leaderboard'")) == 1
    assert "http://127.0.0.1:5000/#/experiments/" in (tmp_path / "again" / "toy" / "leaderboard.md").read_text()
    # a selection the runs have no numbers for is an error, not an empty table
    assert cli("leaderboard", "--results", results, "--selection", "best-val") == 2
    assert "best-val" in capsys.readouterr().err


def test_collect_runs_leaves_the_process_tracking_uri_alone(own_store, monkeypatch):
    # a second store opened later in the same process must not receive this one's runs
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert len(collect_runs(own_store)) == 4
    assert "MLFLOW_TRACKING_URI" not in os.environ
