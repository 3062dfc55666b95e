"""The plugin host: built-ins are entry points, temporary plugins register and unregister, duplicates and
unknown names are clear errors, a broken plugin is isolated, filters and --plugins-dir work."""

from __future__ import annotations

import inspect
import json
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

import rkdbench
from rkdbench import hookspecs, plugins
from rkdbench.cli import cli
from rkdbench.errors import UnknownComponentError, UserError
from rkdbench.registry import KINDS

ROOT = Path(__file__).resolve().parents[1]


class ToyMethod(rkdbench.Method):
    name = "toy"
    needs = frozenset({"s_adv"})

    def attack_objective(self, out, y):
        return out.s_adv.sum(1)

    def loss(self, out, y, progress):
        return out.s_adv.mean()


class ToyPlugin:
    @rkdbench.hookimpl
    def register_methods(self, register):
        register(ToyMethod)


def test_builtins_come_from_entry_points():
    registry = plugins.get_registry()
    for kind, expected in {
        "method": {
            "standard",
            "kd",
            "pgd-at",
            "trades",
            "mart",
            "ard",
            "rslad",
            "iad",
            "iad-ii",
            "akd",
            "adaad",
            "advfunmatch",
            "rsnl",
            "mtard",
        },
        "architecture": {"cnn-small", "cnn-tiny", "cnn-large"},
        "attack": {"pgd", "autoattack", "apgd-ce", "apgd-t", "fab-t", "square", "cw", "fgsm"},
        "dataset": {"digits"},
        "teacher": {"digits/Linf/rkdbench-cnn-large"},
    }.items():
        assert expected <= set(rkdbench.list_components(kind))
        for name in expected:
            component = registry.get(kind, name)
            assert component.dist == "rkdbench", component  # registered through the package's entry points
            assert component.plugin in {ep.name for ep in _entry_points()}
    assert plugins.broken_plugins() == []


def _entry_points():
    from importlib.metadata import entry_points

    return list(entry_points(group="rkdbench"))


def test_temporary_plugin_registers_and_unregisters(register_plugin):
    register_plugin(ToyPlugin(), "toy-plugin")
    assert "toy" in rkdbench.list_components("method")
    method = rkdbench.create("method", "toy")
    assert isinstance(method, ToyMethod) and method.needs == {"s_adv"}
    plugins.pm.unregister(name="toy-plugin")
    plugins.reset()
    assert "toy" not in rkdbench.list_components("method")


class ToyStep(rkdbench.StepMethod):
    name = "toy-step"

    def training_step(self, batch, ctx):
        return ctx.student(batch[0]).mean()


def test_both_method_contracts_register_list_and_build(register_plugin):
    class Both:
        @rkdbench.hookimpl
        def register_methods(self, register):
            register(ToyMethod)
            register(ToyStep)

    register_plugin(Both(), "both-contracts")
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["toy"]["status"] == rows["toy-step"]["status"] == "ok"
    assert rows["toy-step"]["plugin"] == "both-contracts"
    assert isinstance(rkdbench.create("method", "toy"), rkdbench.Method)
    step = rkdbench.create("method", "toy-step")
    assert isinstance(step, rkdbench.StepMethod) and not isinstance(step, rkdbench.Method)


def test_a_method_without_its_contract_cannot_be_built():
    class NoLoss(rkdbench.Method):
        name = "no-loss"
        attack = None

    class NoObjective(rkdbench.Method):
        name = "no-objective"

        def loss(self, out, y, progress):
            return out.s_adv.mean()

    class NoStep(rkdbench.StepMethod):
        name = "no-step"

    with pytest.raises(TypeError, match="loss"):
        NoLoss()
    with pytest.raises(TypeError, match="'no-objective' has a training attack but no attack_objective"):
        NoObjective()
    with pytest.raises(TypeError, match="training_step"):
        NoStep()
    NoObjective.attack = None  # without a training attack the objective is never asked for
    assert NoObjective().attack is None


def test_duplicate_name_is_an_error_naming_both_plugins(register_plugin, monkeypatch):
    class Clash:
        @rkdbench.hookimpl
        def register_methods(self, register):
            register(ToyMethod, name="ard")

    register_plugin(Clash(), "clashing-plugin")
    broken = plugins.broken_plugins()
    assert len(broken) == 1 and broken[0].plugin == "clashing-plugin"
    assert "'ard'" in broken[0].error and "method-ard" in broken[0].error and "clashing-plugin" in broken[0].error
    assert rkdbench.create("method", "ard").name == "ard"  # the first registration is kept, never overwritten
    monkeypatch.setenv("RKDBENCH_STRICT_PLUGINS", "1")
    plugins.reset()
    with pytest.raises(UserError, match="registered twice"):
        plugins.get_registry()


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownComponentError, match=r"unknown method 'rslda' \(did you mean: rslad"):
        rkdbench.create("method", "rslda")
    with pytest.raises(UnknownComponentError, match="did you mean: cnn-small"):
        rkdbench.create("architecture", "cnn-smal")


def test_unknown_method_parameter_is_rejected_with_close_match():
    with pytest.raises(UserError, match=r"no parameter 'temprature' \(given 1.0\) \(did you mean: temperature\?\)"):
        rkdbench.create("method", "ard", temprature=1.0)


def _with_broken_entry_point(monkeypatch):
    real = _entry_points()
    broken = EntryPoint(name="broken-one", value="rkdbench_no_such_module_xyz", group="rkdbench")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*real, broken])
    plugins.reset(keep_plugins=False)


def test_broken_entry_point_is_isolated_and_listed(monkeypatch):
    _with_broken_entry_point(monkeypatch)
    try:
        assert "rslad" in rkdbench.list_components("method")  # the host still works
        [broken] = plugins.broken_plugins()
        assert broken.plugin == "broken-one" and "ModuleNotFoundError" in broken.error
        result = CliRunner().invoke(cli, ["plugins", "--json"])
        rows = json.loads(result.output)
        assert any(r["name"] == "broken-one" and r["status"].startswith("broken: ModuleNotFoundError") for r in rows)
        monkeypatch.setenv("RKDBENCH_STRICT_PLUGINS", "1")
        plugins.reset(keep_plugins=False)
        with pytest.raises(UserError, match="broken-one"):
            plugins.get_registry()
    finally:
        monkeypatch.undo()
        plugins.reset(keep_plugins=False)


def test_load_and_disable_filters(monkeypatch):
    try:
        monkeypatch.setenv("RKDBENCH_DISABLE_PLUGINS", "method-ard")
        plugins.reset(keep_plugins=False)
        assert "ard" not in rkdbench.list_components("method") and "rslad" in rkdbench.list_components("method")
        monkeypatch.delenv("RKDBENCH_DISABLE_PLUGINS")
        monkeypatch.setenv("RKDBENCH_LOAD_PLUGINS", "method-ard,dataset-digits")
        plugins.reset(keep_plugins=False)
        assert rkdbench.list_components("method") == ["ard"]
        assert rkdbench.list_components("attack") == []
    finally:
        monkeypatch.undo()
        plugins.reset(keep_plugins=False)


def test_plugins_dir_loads_loose_files(tmp_path):
    (tmp_path / "my_method.py").write_text(
        "import rkdbench\n"
        "class Loose(rkdbench.Method):\n"
        "    name = 'loose'\n"
        "@rkdbench.hookimpl\n"
        "def register_methods(register):\n"
        "    register(Loose)\n"
    )
    try:
        result = CliRunner().invoke(cli, ["--plugins-dir", str(tmp_path), "plugins", "--json"])
        assert result.exit_code == 0, result.output
        row = next(r for r in json.loads(result.output) if r["name"] == "loose")
        assert row["dist"] == "plugins-dir" and row["plugin"] == "plugins-dir:my_method" and row["status"] == "ok"
    finally:
        plugins.pm.unregister(name="plugins-dir:my_method")
        plugins.reset()


def test_every_hook_is_documented_with_its_signature():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [name for name, _ in inspect.getmembers(hookspecs.RkdbenchSpec, inspect.isfunction)]
    assert len(hooks) == 10
    for name in hooks:
        signature = str(inspect.signature(getattr(hookspecs.RkdbenchSpec, name))).replace("self, ", "")
        signature = re.sub(r" -> None$", "", signature.replace("'", ""))
        assert f"{name}{signature}" in docs, f"docs/plugins.md must document {name}{signature}"


def test_registry_kinds_match_register_hooks():
    assert set(KINDS) == set(plugins.REGISTER_HOOKS)


def test_two_plugin_files_with_the_same_name_are_not_silently_merged(tmp_path):
    body = (
        "import rkdbench\nclass M(rkdbench.Method):\n    name = '{n}'\n"
        "@rkdbench.hookimpl\ndef register_methods(register):\n    register(M)\n"
    )
    for folder, method in (("a", "first"), ("b", "second")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "method.py").write_text(body.format(n=method))
    try:
        plugins.load_plugins_dir(tmp_path / "a")
        plugins.load_plugins_dir(tmp_path / "b")
        broken = plugins.broken_plugins()
        assert "first" in rkdbench.list_components("method")
        assert len(broken) == 1 and "already loaded from" in broken[0].error and str(tmp_path / "a") in broken[0].error
    finally:
        plugins.pm.unregister(name="plugins-dir:method")
        plugins.reset()
