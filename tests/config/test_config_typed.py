"""The typed protocol (issue 11, item 1): sections are frozen dataclasses declared one line per field, readers get
typed values with the declared defaults, the hash is computed over the canonical tables exactly as before; the
optional `eval.rank_by`; and method parameters with a fixed set of choices checked when the suite loads (item 7)."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import rkdbench
from rkdbench.cli import main
from rkdbench.config import (
    AttackEntry,
    EvalConfig,
    Protocol,
    TrainConfig,
    builtin_names,
    canonical_hash,
    load_protocol,
    load_suite,
    parse_set,
)
from rkdbench.config.fields import Section, at_least, choices_of, optional, required
from rkdbench.contracts.method import AttackSpec
from rkdbench.errors import ConfigError
from rkdbench.plugins import get_registry


@pytest.mark.parametrize("name", builtin_names("protocols"))
def test_every_shipped_protocol_loads_typed_with_the_hash_of_its_file(name):
    protocol = load_protocol(name)
    raw = tomllib.loads(Path(protocol.source).read_text())
    raw.pop("resources", None)
    raw.pop("tune", None)  # how configurations are searched: not hashed (tests/tuning/test_tuning_protocol.py)
    assert protocol.hash == canonical_hash(raw) and protocol.data == raw  # nothing added, nothing converted
    for table, (attribute, _) in {
        "protocol": ("header", 0),
        "threat": ("threat", 0),
        "data": ("inputs", 0),
        "train": ("train", 0),
        "eval": ("eval", 0),
    }.items():
        section = getattr(protocol, attribute)
        for key, value in raw[table].items():  # every value given is read back, typed
            typed = getattr(section, key)
            if key == "attacks":  # label -> AttackEntry, whose table is the one written
                assert {label: entry.table for label, entry in typed.items()} == value, (name, table, key)
                assert all(isinstance(entry, AttackEntry) and entry.label == label for label, entry in typed.items())
                continue
            assert typed == (tuple(value) if isinstance(value, list) else value), (name, table, key)
    assert not hasattr(protocol, "section")  # one way to read a protocol: the typed attributes


def test_absent_optional_fields_read_as_their_declared_defaults():
    protocol = load_protocol("digits-linf")
    raw = tomllib.loads(Path(protocol.source).read_text())
    assert not {"precision", "channels_last", "swa_start", "compile", "milestones", "gamma"} & set(raw["train"])
    train, evaluation = protocol.train, protocol.eval
    assert (train.precision, train.channels_last, train.swa_start, train.compile) == ("fp32", "off", None, False)
    assert (train.milestones, train.gamma, train.nesterov, train.device) == ((), 0.1, False, "auto")
    assert (evaluation.chunk_size, evaluation.diagnostics, evaluation.rank_by) == (0, False, None)
    assert protocol.header.data_root == "" and protocol.resources.cpus_per_cell == 1
    assert protocol.resources.gpus_per_cell is None


def test_values_arrive_as_the_declared_types_while_the_hash_keeps_what_was_written():
    protocol = load_protocol("digits-linf", {"train.lr": 1, "train.schedule": "piecewise", "train.milestones": [2, 5]})
    assert protocol.train.lr == 1.0 and isinstance(protocol.train.lr, float)  # no float() at read sites
    assert protocol.train.milestones == (2, 5)
    assert protocol.data["train"]["lr"] == 1 and isinstance(protocol.data["train"]["lr"], int)
    assert protocol.hash == canonical_hash(protocol.data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.train.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"train.lr": "fast"}, r"train\.lr = 'fast' is not allowed; allowed: a number > 0$"),
        ({"train.epochs": 1.5}, r"train\.epochs = 1\.5 is not allowed; allowed: an integer >= 1$"),
        ({"train.epochs": True}, r"train\.epochs = True is not allowed; allowed: an integer >= 1$"),
        (
            {"train.milestones": [3, 0]},
            r"train\.milestones = \[3, 0\] is not allowed; allowed: a list of integers >= 1",
        ),
        (
            {"train.schedule": "cosin"},
            r"train\.schedule = 'cosin' is not allowed; allowed: constant, piecewise, cosine "
            r"\(did you mean: cosine\?\)",
        ),
        (
            {"eval.selections": ["best-val"]},
            r"eval\.selections = \['best-val'\] is not allowed; allowed: a list of "
            r"'last', 'best-val' and 'swa', containing 'last'",
        ),
        ({"eval.selections": ["last", "bset-val"]}, r"eval\.selections = .* containing 'last'"),
        ({"data.augment": "flip"}, r"data\.augment = 'flip' is not allowed; allowed: none, pad1-crop, pad4-crop-flip"),
        ({"protocol.teacher": 3}, r"protocol\.teacher = 3 is not allowed; allowed: a string"),
    ],
)
def test_a_wrong_value_is_refused_naming_file_field_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_protocol("digits-linf", override)
    assert "digits-linf.toml (after --set)" in str(error.value)


def test_a_bad_field_in_a_file_names_the_file(tmp_path):
    text = Path(load_protocol("digits-linf").source).read_text().replace("epochs = 30", 'epochs = "30"')
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"p\.toml: train\.epochs = '30' is not allowed; allowed: an integer >= 1"):
        load_protocol(str(path))
    path.write_text(text.replace('epochs = "30"\n', ""))
    with pytest.raises(ConfigError, match=r"p\.toml: missing field\(s\) train\.epochs"):
        load_protocol(str(path))


def test_a_field_is_one_line():
    @dataclass(frozen=True, kw_only=True)
    class Toy(Section):
        table = "toy"
        steps: int = required(at_least(1))
        mode: Literal["fast", "slow"] = optional("slow")
        scale: float = optional(1.0)

    assert Toy.parse("t.toml", {"steps": 3}) == Toy(steps=3, mode="slow", scale=1.0)
    assert Toy.parse("t.toml", {"steps": 3, "scale": 2}).scale == 2.0
    with pytest.raises(
        ConfigError,
        match=r"t\.toml: toy\.mode = 'fats' is not allowed; allowed: fast, slow "
        r"\(did you mean: fast\?\)",
    ):
        Toy.parse("t.toml", {"steps": 3, "mode": "fats"})
    with pytest.raises(ConfigError, match=r"unknown field toy\.step \(did you mean: steps\?\); allowed in \[toy\]"):
        Toy.parse("t.toml", {"step": 3})
    with pytest.raises(ConfigError, match=r"missing field\(s\) toy\.steps"):
        Toy.parse("t.toml", {})


def test_a_protocol_built_from_its_tables_types_them_the_same():
    loaded = load_protocol("digits-linf", {"train.epochs": 2})
    rebuilt = Protocol(loaded.name, loaded.data, loaded.source, loaded.overrides)
    assert rebuilt.train == loaded.train and rebuilt.eval == loaded.eval and rebuilt.hash == loaded.hash
    assert isinstance(rebuilt.train, TrainConfig) and isinstance(rebuilt.eval, EvalConfig)


# ------------------------------------------------------------------------------------------------ eval.rank_by


def test_rank_by_is_optional_and_names_an_attack_label_or_clean():
    plain = load_protocol("digits-linf")
    assert plain.eval.rank_by is None and "rank_by" not in plain.data["eval"]
    ranked = load_protocol("digits-linf", {"eval.rank_by": "aa"})
    assert ranked.eval.rank_by == "aa" and ranked.hash != plain.hash
    assert load_protocol("digits-linf", {"eval.rank_by": "clean"}).eval.rank_by == "clean"
    with pytest.raises(
        ConfigError,
        match=r"eval\.rank_by = 'pgd2' is not allowed; allowed: clean, pgd20, aa "
        r"\(the labels of eval\.attacks, or clean\) \(did you mean: pgd20",
    ):
        load_protocol("digits-linf", {"eval.rank_by": "pgd2"})
    with pytest.raises(ConfigError, match=r"eval\.rank_by = 3 is not allowed; allowed: a string"):
        load_protocol("digits-linf", {"eval.rank_by": 3})


# ------------------------------------------------------------------ method parameters with a fixed set of choices


def suite(tmp_path: Path, params: str = "") -> str:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[suite]\nname = "mine"\nprotocol = "digits-linf"\nmethods = ["pgd-at", "ard"]\n'
        'students = ["cnn-tiny"]\nseeds = [0]\n' + params
    )
    return str(path)


def test_a_bad_method_choice_in_the_suite_file_stops_the_load(tmp_path):
    path = suite(tmp_path, '[suite.method_params.ard]\nkl_reduction = "meen"\n')
    with pytest.raises(
        ConfigError,
        match=r"mine\.toml: method 'ard' parameter 'kl_reduction' = 'meen' is not "
        r"allowed; allowed: mean, batchmean, sum \(did you mean: mean\?\)",
    ):
        load_suite(path)
    path = suite(tmp_path, '[suite.method_params.ard]\nattack_init = "gaus"\n')
    with pytest.raises(
        ConfigError,
        match=r"mine\.toml: method 'ard' attack_init = 'gaus' is not allowed; "
        r"allowed: uniform, gauss, zero \(did you mean: gauss",
    ):
        load_suite(path)


def test_a_bad_method_choice_through_set_stops_the_load(tmp_path):
    path = suite(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"mine\.toml \(after --set\): method 'ard' attack_bn = 'frozen' is not "
        r"allowed; allowed: train, eval",
    ):
        load_suite(path, parse_set(["method.ard.attack_bn=frozen"]))
    ok = load_suite(path, parse_set(["method.ard.kl_reduction=batchmean", "method.ard.attack_bn=train"]))
    assert ok.method_params["ard"] == {"kl_reduction": "batchmean", "attack_bn": "train"}


def test_the_cli_refuses_a_bad_method_choice_in_one_line_with_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", suite(tmp_path), "--set", "method.ard.kl_reduction=meen", "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mine.toml (after --set): method 'ard' parameter 'kl_reduction' = 'meen'" in err
    assert "allowed: mean, batchmean, sum" in err


def test_every_method_choice_is_declared_once_and_its_default_is_allowed():
    hints = typing.get_type_hints(AttackSpec)
    assert choices_of(hints["init"]) == ("uniform", "gauss", "zero") and choices_of(hints["bn"]) == ("train", "eval")
    chosen = {}
    for name in rkdbench.list_components("method"):
        cls = get_registry().get("method", name).obj
        hints = typing.get_type_hints(cls.Params) if dataclasses.is_dataclass(cls.Params) else {}
        for field in dataclasses.fields(cls.Params) if hints else ():
            options = choices_of(hints[field.name])
            if options:
                assert field.default in options, (name, field.name)
                chosen[(name, field.name)] = options
                with pytest.raises(ConfigError, match=f"parameter '{field.name}' = 'bogus' is not allowed"):
                    cls(**{field.name: "bogus"})
    assert chosen[("fair-mtard", "natural_target")] == ("robust_adv", "natural_clean")
    assert chosen[("advfunmatch", "kl_direction")] == ("teacher||student", "student||teacher")
    assert len({k for k in chosen if k[1] == "kl_reduction"}) >= 6
