"""The protocol field table of docs/protocols.md is what the field declarations generate (so a field's allowed values,
default and description in the docs cannot drift from rkdbench/config/protocol.py), and every field has a description
to generate it from."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkdbench.config.field_docs import BEGIN, END, markdown_table, with_field_table
from rkdbench.config.fields import Section, at_least, optional, required
from rkdbench.config.protocol import SECTIONS, ResourcesConfig, TuneConfig, field_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocols.md"


def test_the_docs_field_table_is_current():
    text = DOC.read_text()
    stale = "docs/protocols.md's field table is stale: run python scripts/protocol_docs.py"
    assert with_field_table(text, field_table()) == text, stale


def test_every_protocol_field_is_a_row_with_its_description():
    rows = field_table().splitlines()[2:]
    sections = [*(section for _, section in SECTIONS.values()), ResourcesConfig, TuneConfig]
    assert [row.split(" | ")[0] for row in rows] == [
        f"| `{section.table}.{name}`" for section in sections for name in section.fields()
    ]
    assert "| `train.epochs` | an integer >= 1 | required | training epochs |" in rows
    assert "| `train.optimizer` | `sgd`, `adam` | required |" in "\n".join(rows)
    assert "| `train.swa_start` | an integer >= 0 (a 0-based epoch) | unset |" in "\n".join(rows)
    assert "| `eval.diagnostics` | `true` or `false` | `false` |" in "\n".join(rows)
    assert "| `tune.space` | a table | `{}` |" in "\n".join(rows)


def test_a_field_without_a_description_is_named():
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Toy(Section):
        table = "toy"
        size: int = required(at_least(1), description="how big")
        colour: str = optional("red")

    with pytest.raises(ValueError, match=r"toy\.colour is declared without a description"):
        markdown_table([Toy])


def test_the_table_goes_between_its_markers_only():
    text = f"before\n{BEGIN}\nold table\n{END}\nafter\n"
    assert with_field_table(text, "| new |\n") == f"before\n{BEGIN}\n| new |\n{END}\nafter\n"
    with pytest.raises(ValueError, match="no generated field table here"):
        with_field_table("no markers", "| new |\n")
