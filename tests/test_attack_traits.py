"""Attacks describe themselves (issue 11, items 4 and 7): the host reads display names, the sanity flags' order,
the rank label, costs and option choices from the attack plugins' declarations, never from their names; a protocol
whose attacks are labelled otherwise runs a cell, builds its teacher and its leaderboard; an attack option outside
its declared choices fails when the suite loads, on one line, with exit code 2, before anything is trained."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import rkdbench
from rkdbench import hookimpl
from rkdbench.attacks.base import Attack
from rkdbench.attacks.traits import (
    attack_plugins,
    column_order,
    display_names,
    final_label,
    format_accuracies,
    plugins_of,
    rank_label,
    ranked_accuracy,
    sanity_pairs,
)
from rkdbench.cli import main
from rkdbench.config import AttackEntry, attack_entries, load_protocol
from rkdbench.errors import ConfigError
from rkdbench.evaluation.flags import sanity_flags
from rkdbench.teachers.card import TeacherCard
from rkdbench.teachers.model_dir import card_path
from rkdbench.tracking import tracking_uri

DIGITS = Path(rkdbench.__file__).parent / "configs" / "protocols" / "digits-linf.toml"
# `strong` is AutoAttack and `fast` a 5-step PGD: nothing may depend on the built-in labels `aa` and `pgd20`
OTHER_LABELS = """
[eval.attacks.fast]
attack = "pgd"
steps = 5
{extra}
[eval.attacks.strong]
attack = "autoattack"
version = "standard"
"""


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def protocol_file(tmp_path: Path, extra: str = "", name: str = "digits-other-labels") -> Path:
    """digits-linf with its attacks relabelled (1 epoch, 6 test points, diagnostics on) as a protocol file."""
    text = DIGITS.read_text().split("[eval.attacks.pgd20]")[0]
    text = text.replace('name = "digits-linf"', f'name = "{name}"').replace("epochs = 30", "epochs = 1")
    text = text.replace("n_examples = 0 ", "n_examples = 6 ").replace("val_pgd_steps = 10", "val_pgd_steps = 2")
    text = text.replace('selections = ["last", "best-val"]', 'selections = ["last"]\ndiagnostics = true')
    path = tmp_path / f"{name}.toml"
    path.write_text(text + OTHER_LABELS.format(extra=extra))
    return path


def test_builtin_declarations_give_the_builtin_names_order_and_rank():
    specs = load_protocol("cifar10-linf-8").eval.attacks
    plugins = plugins_of(specs)
    shown_before = {"pgd20": "PGD-20", "cw": "CW", "aa": "AutoAttack"}  # the leaderboard's names before declarations

    assert {label: name for label, name in display_names(specs, plugins).items() if label in specs} == shown_before
    assert rank_label(list(specs), specs, plugins) == final_label(specs, specs, plugins) == "aa"
    assert rank_label(list(specs), specs, plugins, rank_by="cw") == "cw"
    assert column_order(sorted(specs), specs, plugins) == ["pgd20", "cw", "aa"]
    assert [code for *_, code in sanity_pairs(specs, plugins)] == ["aa>pgd", "pgd>clean", "aa>clean"]


def test_display_names_follow_the_options_and_never_collide():
    plugins = attack_plugins(["pgd", "autoattack"])
    specs = attack_entries(
        {
            "fast": {"attack": "pgd", "steps": 5},
            "a": {"attack": "autoattack"},
            "b": {"attack": "autoattack", "version": "plus"},
        }
    )
    names = display_names(specs, plugins)
    assert names["fast"] == "PGD-5" and (names["a"], names["b"]) == ("a", "b")  # two AutoAttacks: their labels


class Stronger(Attack):
    """A test attack that declares itself stronger than AutoAttack in the sanity order."""

    name = "test-stronger"
    sanity_rank = 3
    flag_code = "st"


class Undeclared(Attack):
    name = "test-undeclared"


class Plugin:
    @hookimpl
    def register_attacks(self, register):
        register(Stronger)
        register(Undeclared)


def test_sanity_flags_follow_the_declared_order(register_plugin):
    register_plugin(Plugin(), "test-attack-traits")
    specs = attack_entries(
        {
            "p": {"attack": "pgd"},
            "s": {"attack": "test-stronger"},
            "aa": {"attack": "autoattack"},
            "u": {"attack": "test-undeclared"},
        }
    )
    metrics = {"clean_acc": 0.9, "p_acc": 0.5, "aa_acc": 0.45, "s_acc": 0.47, "u_acc": 0.95}
    # `st` above `aa` is flagged; the undeclared attack, above clean, is compared with nothing
    assert sanity_flags(metrics, specs, {}) == ["st>aa"]
    assert sanity_flags({**metrics, "s_acc": 0.55}, specs, {}) == ["st>aa", "st>pgd"]
    assert sanity_flags({**metrics, "s_acc": 0.4}, specs, {}) == []


def test_costs_and_first_stage_are_declared_per_attack():
    pgd, cw, aa = (attack_plugins([name])[name] for name in ("pgd", "cw", "autoattack"))
    assert pgd.passes_per_point({"steps": 7, "restarts": 2}, 0.5) == (15, 14)
    assert cw.passes_per_point({"steps": 30, "restarts": 1}, 0.5) == (31, 30)
    assert aa.passes_per_point({}, 1.0) == (7900, 1900) and aa.passes_per_point({}, 0.0) == (120, 100)
    assert aa.first_stage({"attack": "autoattack"}) == {
        "attack": "autoattack",
        "version": "custom",
        "attacks": ["apgd-ce"],
    }
    assert aa.first_stage({"attack": "autoattack", "version": "plus"}) is None and pgd.first_stage({}) is None


def test_option_choices_come_from_one_declaration():
    pgd, aa = attack_plugins(["pgd"])["pgd"], attack_plugins(["autoattack"])["autoattack"]
    with pytest.raises(ConfigError, match=r"'loss' = 'xe' is not allowed; allowed: ce, margin \(did you mean: ce\?\)"):
        rkdbench.create("attack", "pgd", loss="xe")
    with pytest.raises(
        ConfigError, match=r"'attacks' = 'apgd-c' is not allowed; allowed: apgd-ce, .*\(did you mean: apgd-ce"
    ):
        rkdbench.create("attack", "autoattack", version="custom", attacks=["apgd-c"])
    with pytest.raises(ConfigError, match="'version' = 'standrd'"):
        rkdbench.create("attack", "autoattack", version="standrd")
    rkdbench.create("attack", "autoattack", version="custom", attacks=["apgd-ce", "square"])  # each item checked
    assert "loss" not in {f.name for f in dataclasses.fields(aa.Params)} and pgd.Params.__annotations__["loss"]


def test_format_accuracies_never_crashes_on_missing_labels():
    specs = attack_entries({"fast": {"attack": "pgd", "steps": 5}, "strong": {"attack": "autoattack"}})
    assert ranked_accuracy({"test.strong_acc": 0.25}, specs, split="test") == ("AutoAttack", 0.25)
    assert ranked_accuracy({"test.strong_acc": 0.25}, specs, split="test", rank_by="fast") is None
    text = format_accuracies({"clean_acc": 0.9, "fast_acc": 0.5, "strong_acc": None, "extra_acc": 0.25}, specs)
    assert text == "clean 90.0%, PGD-5 50.0%, AutoAttack n/a, extra 25.0%"


def test_a_bad_attack_option_fails_at_load_on_one_line(tmp_path, capsys):
    protocol = protocol_file(tmp_path, extra='loss = "xe"')
    suite = tmp_path / "bad.toml"
    suite.write_text(
        f'[suite]\nname = "bad"\nprotocol = "{protocol}"\nmethods = ["standard"]\n'
        'students = ["cnn-tiny"]\nseeds = [0]\n'
    )
    results = tmp_path / "results"
    assert cli("run", str(suite), "--results", str(results), "--model-dir", str(tmp_path / "models")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for part in (str(protocol), "eval.attacks.fast", "'loss'", "'xe'", "did you mean: ce", "allowed: ce, margin"):
        assert part in err, (part, err)
    assert not (results / "mlruns").exists() or not MlflowClient(tracking_uri(results)).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri(results)).search_experiments()]
    )


def test_attack_entries_are_checked_against_their_plugins_naming_file_label_option_and_value(tmp_path):
    from rkdbench.attacks.entries import check_attack_entries

    path = protocol_file(tmp_path, extra="stepz = 7")
    protocol = load_protocol(str(path))  # typed without loading a plugin: the options are checked apart
    assert protocol.eval.attacks["fast"] == AttackEntry("fast", "pgd", {"steps": 5, "stepz": 7})
    with pytest.raises(ConfigError) as error:
        check_attack_entries(protocol)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: eval.attacks.fast: attack 'pgd' has no parameter")
    for part in ("'stepz'", "(given 7)", "did you mean: steps", "allowed: init, kappa, loss, restarts"):
        assert part in message, (part, message)
    unknown = load_protocol(str(protocol_file(tmp_path, name="unknown")), {"eval.attacks.fast.attack": "pgdd"})
    with pytest.raises(ConfigError, match=r"unknown\.toml: eval\.attacks\.fast: unknown attack 'pgdd' \(did you mean"):
        check_attack_entries(unknown)
    check_attack_entries(load_protocol("cifar10-linf-8"))  # the built-ins pass


@pytest.mark.parametrize(
    "attacks, message",
    [
        ({"clean": {"attack": "pgd"}}, "eval.attacks.clean is not allowed as a label"),
        ({"worst_class_x": {"attack": "pgd"}}, "eval.attacks.worst_class_x is not allowed as a label"),
        ({"fast": {"steps": 5}}, "eval.attacks.fast must be a table with an `attack` plugin name"),
        ({}, r"\[eval.attacks\] must name at least one attack"),
    ],
)
def test_a_malformed_attack_entry_is_refused_when_the_protocol_loads(attacks, message):
    with pytest.raises(ConfigError, match=r"digits-linf\.toml \(after --set\): " + message):
        load_protocol("digits-linf", {"eval.attacks": attacks})


def test_legacy_labels_are_the_plugins_declarations_never_inherited():
    from rkdbench.attacks.traits import legacy_specs

    assert legacy_specs() == {
        "aa": AttackEntry("aa", "autoattack"),
        "cw": AttackEntry("cw", "cw"),
        "pgd20": AttackEntry("pgd20", "pgd", {"steps": 20}),
    }
    pgd = attack_plugins(["pgd"])["pgd"]
    relabelled = type("Relabelled", (pgd,), {"name": "relabelled"})  # a subclass answers to none of its parent's
    assert legacy_specs({"relabelled": relabelled}) == {}
    assert legacy_specs({"relabelled": type("Other", (pgd,), {"legacy_labels": {"p7": {"steps": 7}}})}) == {
        "p7": AttackEntry("p7", "relabelled", {"steps": 7})
    }


def _string_constants(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant of a module outside its docstrings."""
    tree = ast.parse(source)
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_host_spells_no_attack_plugin_name_or_label():
    """The labels the built-in protocols give their attacks, those attacks' plugin names and the labels' metric names
    appear in no host module: the plugins declare them (`AttackTraits.legacy_labels`), protocols and references.toml
    hold them as data. `pgd` is also the host's own PGD primitive (`rkdbench.pgd`), so it is left out."""
    from rkdbench.attacks.traits import legacy_specs

    legacy = legacy_specs()
    names = ({*legacy} | {entry.attack for entry in legacy.values()}) - {"pgd"}
    assert names == {"aa", "pgd20", "cw", "autoattack"}
    package = Path(rkdbench.__file__).parent
    found = [
        f"{path.relative_to(package)}:{line}: {text!r}"
        for path in sorted(package.rglob("*.py"))
        for line, text in _string_constants(path.read_text())
        if text in names or any(text.startswith(f"{name}_acc") for name in names)
    ]
    assert not found, "the host spells attack plugins' names or labels:\n" + "\n".join(found)
    assert _string_constants('"""Doc: "aa"."""\nx = {"aa": 1}\ny = f"aa_acc"') == [(2, "aa"), (3, "aa_acc")]


TEACHER = "digits/Linf/test-other-labels"


@pytest.mark.slow
def test_other_labels_run_a_cell_build_the_teacher_and_the_leaderboard(tmp_path, register_plugin, capsys):
    protocol = protocol_file(tmp_path)
    card = TeacherCard(
        name=TEACHER,
        architecture="cnn-tiny",
        dataset="digits",
        norm="Linf",
        eps=0.15,
        num_classes=10,
        in_channels=1,
        recipe={"protocol": str(protocol), "method": "standard", "seed": 0, "set": {}},
    )

    class TeacherPlugin:
        @hookimpl
        def register_teachers(self, register):
            register(card)

    register_plugin(TeacherPlugin(), "test-other-labels-teacher")
    suite = tmp_path / "labels.toml"
    suite.write_text(
        f'[suite]\nname = "labels"\nprotocol = "{protocol}"\nmethods = ["ard"]\n'
        f'students = ["cnn-tiny"]\nteachers = ["{TEACHER}"]\nseeds = [0]\n'
    )
    results, models = tmp_path / "results", tmp_path / "models"
    assert cli("run", str(suite), "--results", str(results), "--model-dir", str(models), "--build-teachers") == 0
    out = capsys.readouterr().out
    measured = json.loads(card_path(card, models).read_text())
    assert set(measured["attacks"]) == {"fast", "strong"} and "pgd20_acc" not in measured
    assert all(0.0 <= measured[f"{label}_acc"] <= 1.0 for label in ("clean", "fast", "strong"))
    assert (
        f"clean {measured['clean_acc']:.1%}, PGD-5 {measured['fast_acc']:.1%}, "
        f"AutoAttack {measured['strong_acc']:.1%} on 6 test points" in " ".join(out.split())
    )

    client = MlflowClient(tracking_uri(results))
    [run] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string="tags.`rkdbench.kind` = 'cell'"
    )
    m = run.data.metrics
    assert run.info.status == "FINISHED" and "test.aa_acc" not in m and "test.pgd20_acc" not in m
    assert 0.0 <= m["test.strong_acc"] <= m["test.clean_acc"] and "diag.eps_x2_acc" in m
    flags = [code for code in run.data.tags.get("rkdbench.flags", "").split(",") if code]
    expected = sanity_flags(
        {k[len("test.") :]: v for k, v in m.items() if k.startswith("test.")},
        load_protocol(str(protocol)).eval.attacks,
        {},
    )
    assert [code for code in flags if ">" in code] == expected

    assert (
        cli(
            "leaderboard",
            "--results",
            str(results),
            "--format",
            "json",
            "--model-dir",
            str(models),
            "--out",
            str(tmp_path / "board"),
        )
        == 0
    )
    [board] = [json.loads(path.read_text()) for path in (tmp_path / "board").rglob("leaderboard.json")]
    assert board["ranked_by"] == "strong"


def test_the_declarations_module_imports_no_torch():
    """The leaderboard and the UI read the declarations: the module, with the attack entries and the tracking schema
    it reads, must load without torch (and without the `Attack` base)."""
    import subprocess
    import sys

    code = (
        "import sys, rkdbench.attacks.traits; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m == 'rkdbench.attacks.base'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "order, labels, specs, expected",
    [
        # runs without config.toml or params: the built-in protocols' meaning of their labels
        (
            [],
            {"pgd20", "cw", "fgsm", "aa", "clean", "zz", "pgd10"},
            None,
            ["clean", "pgd20", "cw", "fgsm", "pgd10", "zz", "aa"],
        ),
        # the protocol's order, its final attack moved last
        (
            ["aa", "cw", "pgd20", "fgsm"],
            {"pgd20", "cw", "aa", "clean", "fgsm"},
            {
                "aa": {"attack": "autoattack"},
                "cw": {"attack": "cw"},
                "pgd20": {"attack": "pgd"},
                "fgsm": {"attack": "fgsm"},
            },
            ["clean", "cw", "pgd20", "fgsm", "aa"],
        ),
        (
            ["strong", "fast"],
            {"strong", "fast", "clean", "other"},
            {"strong": {"attack": "autoattack"}, "fast": {"attack": "pgd", "steps": 5}},
            ["clean", "fast", "other", "strong"],
        ),
    ],
)
def test_table_order_is_the_leaderboards(order, labels, specs, expected):
    from rkdbench.attacks.traits import legacy_specs, table_order

    specs = legacy_specs() if specs is None else attack_entries(specs)
    plugins = plugins_of(specs)
    assert table_order(order, labels, specs, plugins) == expected
    assert final_label(expected, specs, plugins) == expected[-1]


def test_ui_view_follows_the_declarations():
    from rkdbench.attacks.traits import attack_specs
    from rkdbench.leaderboard.mlflow_view import view_state

    params = {
        "protocol.eval.attacks.fast.attack": "pgd",
        "protocol.eval.attacks.fast.steps": "5",
        "protocol.eval.attacks.strong.attack": "autoattack",
        "protocol.eval.attacks.cw.attack": "cw",
        "protocol.train.epochs": "1",
    }
    specs = attack_specs(params)
    assert specs == attack_entries(
        {
            "fast": {"attack": "pgd", "steps": "5"},
            "strong": {"attack": "autoattack"},
            "cw": {"attack": "cw"},
        }
    )
    measured = {"test.clean_acc", "test.fast_acc", "test.strong.apgd-ce_acc", "test.worst_acc"}
    state = view_state({*measured, "test.worst_class_strong_acc"}, specs)  # worst-class accuracies are no attacks
    assert state["orderByKey"] == "metrics.`test.strong_acc`"
    assert state["selectedColumns"][:4] == [
        f"metrics.`test.{label}_acc`" for label in ("clean", "fast", "cw", "strong")
    ]
    assert view_state(set(), specs, rank_by="fast")["orderByKey"] == "metrics.`test.fast_acc`"


OTHER_SPECS = {"strong": {"attack": "autoattack", "version": "standard"}, "fast": {"attack": "pgd", "steps": 5}}


def _other_label_runs(rank_by: str | None = None, params: bool = True):
    """Two finished cell runs of a protocol labelled `strong` (AutoAttack) / `fast` (PGD-5), as `collect_runs`
    frames them: `a` is ahead under PGD-5 and behind under AutoAttack."""
    import pandas as pd

    described = (
        {
            "params.protocol.eval.attacks.strong.attack": "autoattack",
            "params.protocol.eval.attacks.strong.version": "standard",
            "params.protocol.eval.attacks.fast.attack": "pgd",
            "params.protocol.eval.attacks.fast.steps": "5",
            **({"params.protocol.eval.rank_by": rank_by} if rank_by else {}),
        }
        if params
        else {}
    )
    return pd.DataFrame(
        [
            {
                "run_id": f"run-{method}",
                "experiment_id": "1",
                "experiment": "labels@0123",
                "seed": "0",
                "protocol": "labels",
                "protocol_hash": "h-labels",
                "method_variant": method,
                "student": "s",
                "teacher": "none",
                "flags": "",
                "metrics.test.clean_acc": 0.95,
                "metrics.test.fast_acc": fast,
                "metrics.test.strong_acc": strong,
                **described,
            }
            for method, fast, strong in (("a", 0.9, 0.3), ("b", 0.6, 0.5))
        ]
    )


@pytest.mark.parametrize("source", ["config", "params"])
def test_a_leaderboard_of_other_labels_names_orders_and_ranks_them_as_declared(source):
    """Whether the protocol comes from the run's config.toml or, without one, from its params: columns headed
    PGD-5 and AutoAttack (no `aa`, no `pgd20`), clean first and the final attack last, ranked by AutoAttack,
    and by PGD-5 when the protocol's `eval.rank_by` says `fast`."""
    from rkdbench.leaderboard import build_tables, render
    from rkdbench.leaderboard.shown import shown

    def build(rank_by):
        evaluation = {"attacks": OTHER_SPECS, **({"rank_by": rank_by} if rank_by else {})}
        config = (lambda run_id: {"eval": evaluation}) if source == "config" else (lambda run_id: None)
        runs = _other_label_runs(rank_by if source == "params" else None)
        [table] = build_tables(runs, "last", lambda run_id: None, config=config, references=[])
        return table

    table = build(None)
    assert table.attack_columns == ["clean", "fast", "strong"]  # the protocol lists strong first: final goes last
    assert (table.ranked_by, table.aa_label) == ("strong", "strong")
    assert list(table.frame["method_variant"]) == ["b", "a"]  # AutoAttack 50% beats 30%
    headers = list(shown(table))
    assert headers[headers.index("clean") : headers.index("clean") + 3] == ["clean", "PGD-5", "AutoAttack"]
    text = render(table, "md")
    assert "per-example AutoAttack robustness" in text and "aa_mean" not in table.frame and "pgd20" not in text

    fast = build("fast")
    assert (fast.ranked_by, fast.aa_label) == ("fast", "strong")  # the gap to the teacher stays on AutoAttack
    assert list(fast.frame["method_variant"]) == ["a", "b"]  # PGD-5 90% beats 60%
    assert fast.attack_columns == table.attack_columns and list(shown(fast))[: len(headers)] == headers
    assert "per-example PGD-5 robustness" in render(fast, "md")


def test_a_leaderboard_of_runs_that_describe_nothing_keeps_the_builtin_names():
    """Runs stored with neither config.toml nor protocol params: the built-in protocols' labels keep their
    meaning (LEGACY_SPECS), so `aa` is AutoAttack, shown last and ranking; an unknown label shows as itself."""
    from rkdbench.leaderboard import build_tables
    from rkdbench.leaderboard.shown import shown

    runs = _other_label_runs(params=False).rename(
        columns={"metrics.test.strong_acc": "metrics.test.aa_acc", "metrics.test.fast_acc": "metrics.test.pgd20_acc"}
    )
    runs["metrics.test.zz_acc"] = 0.7
    [table] = build_tables(runs, "last", references=[])
    assert table.attack_columns == ["clean", "pgd20", "zz", "aa"] and table.ranked_by == "aa"
    assert [h for h in shown(table) if h in ("clean", "PGD-20", "zz", "AutoAttack")] == [
        "clean",
        "PGD-20",
        "zz",
        "AutoAttack",
    ]


def test_the_eps_sweep_uses_an_attack_even_when_clean_accuracy_ranks():
    from rkdbench.diagnostics.diagnose import sweep_attack

    assert sweep_attack(load_protocol("digits-linf")) == sweep_attack(
        load_protocol("digits-linf", {"eval.rank_by": "clean"})
    )
    assert sweep_attack(load_protocol("digits-linf", {"eval.rank_by": "pgd20"})).attack == "pgd"
