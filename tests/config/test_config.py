"""Protocol and suite validation: every error names the file, the field, the value and what is allowed,
and the CLI turns it into one line and exit code 2."""

from __future__ import annotations

import pytest

from rkdbench.cli import main
from rkdbench.config import Protocol, load_protocol, load_suite, parse_set, to_toml
from rkdbench.errors import ConfigError, UnknownComponentError
from rkdbench.run.cells import expand_cells


def write(path, text):
    path.write_text(text)
    return str(path)


def test_builtin_protocol_and_suite_load():
    suite = load_suite("digits-quick")
    assert suite.protocol.name == "digits-linf" and suite.protocol.eval.n_examples == 100
    assert suite.protocol.experiment_name.startswith("digits-linf@")  # overridden protocol: its own experiment
    plain = load_protocol("digits-linf")
    assert plain.experiment_name == "digits-linf" and plain.hash != suite.protocol.hash


def test_set_overrides_change_the_protocol_hash_and_cell_keys():
    a = expand_cells(load_suite("digits-quick"))
    b = expand_cells(load_suite("digits-quick", parse_set(["train.epochs=1"])))
    assert len(a) == len(b) == 3
    assert {c.key for c in a}.isdisjoint({c.key for c in b})
    assert b[0].protocol.train.epochs == 1


def test_teacher_free_methods_get_no_teacher():
    cells = {c.method: c for c in expand_cells(load_suite("digits-quick"))}
    assert cells["pgd-at"].teacher == "none"
    assert cells["ard"].teacher == "digits/Linf/rkdbench-cnn-large"


def test_method_override_via_set_changes_variant_and_key():
    cells = expand_cells(load_suite("digits-quick", parse_set(["method.ard.temperature=1.0"])))
    ard = next(c for c in cells if c.method == "ard")
    assert ard.variant == "ard[temperature=1.0]" and ard.method_params["temperature"] == 1.0


def test_parse_set_values():
    assert parse_set(["a.b=1", "c=0.5", "d=[0, 1]", "e=true", "f=hello"]) == {
        "a.b": 1,
        "c": 0.5,
        "d": [0, 1],
        "e": True,
        "f": "hello",
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["nonsense"])


@pytest.mark.parametrize(
    "override, message",
    [
        ({"train.epohcs": 3}, r"unknown field train\.epohcs \(did you mean: epochs\?\)"),
        ({"threat.eps": 8}, r"eps must be in \(0, 1\].*8/255"),
        ({"threat.norm": "L3"}, r"threat\.norm = 'L3' is not allowed; allowed: Linf, L2"),
        ({"train.optimizer": "lbfgs"}, r"train\.optimizer = 'lbfgs' is not allowed; allowed: sgd, adam"),
        ({"train.epochs": 0}, r"train\.epochs = 0 is not allowed; allowed: an integer >= 1"),
        ({"trian.epochs": 1}, r"unknown field trian\.epochs \(did you mean: train"),
    ],
)
def test_bad_overrides_name_field_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_protocol("digits-linf", override)


def test_malformed_toml_gives_line_and_column(tmp_path):
    path = write(tmp_path / "bad.toml", '[suite]\nname = "x"\nmethods = ["ard",,]\nseeds = [0]\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML: .*line \d+, column \d+"):
        load_suite(path)


def test_suite_unknown_field_and_unknown_plugins(tmp_path):
    path = write(
        tmp_path / "s.toml",
        '[suite]\nname="s"\nprotocol="digits-linf"\nmethods=["ard"]\nstudents=["cnn-small"]\nseedz=[0]\n',
    )
    with pytest.raises(ConfigError, match=r"s\.toml: unknown field suite\.seedz \(did you mean: seeds"):
        load_suite(path)
    path = write(
        tmp_path / "t.toml",
        '[suite]\nname="t"\nprotocol="digits-linf"\nmethods=["rslda"]\nstudents=["cnn-small"]\nseeds=[0]\n',
    )
    with pytest.raises(UnknownComponentError, match="did you mean: rslad"):
        expand_cells(load_suite(path))


def test_unknown_builtin_suite_suggests():
    with pytest.raises(ConfigError, match=r"unknown suite 'digits-quik' \(did you mean: digits-quick"):
        load_suite("digits-quik")


def test_cli_bad_input_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "digits-quick", "--set", "threat.eps=8", "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("rkdbench: error:") and "threat.eps = 8" in err


def test_dry_run_lists_cells(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "digits-quick", "--dry-run"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "3 cells" in out and "rslad / cnn-small / digits/Linf/rkdbench-cnn-large / seed 0" in out


def test_resolved_config_round_trips_through_toml():
    import tomllib

    protocol = load_protocol("digits-linf", {"train.epochs": 2})
    assert tomllib.loads(to_toml(protocol.data)) == protocol.data
    assert isinstance(protocol, Protocol)
