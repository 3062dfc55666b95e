"""The Markdown field table of config sections, generated from their declarations (`rkdbench.config.fields`): one row
per field with its TOML name, what it allows, its default and its one-line description. `with_field_table` puts a
table between its markers in a doc: `python scripts/protocol_docs.py` rewrites docs/protocols.md's, and
tests/config/test_protocol_docs.py fails while it is stale.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from .fields import Rule, Section, base_type, choices_of, type_noun

__all__ = ["BEGIN", "END", "allowed_text", "default_text", "field_rows", "markdown_table", "with_field_table"]

BEGIN = "<!-- generated from the field declarations by `python scripts/protocol_docs.py`: edit those, not this -->"
END = "<!-- end of the generated field table -->"
HEADER = "| field | allowed | default | description |\n| --- | --- | --- | --- |\n"


def allowed_text(kind: Any, rule: Rule | None) -> str:
    """The values a field allows, for a reader: its choices, or its type narrowed by its rule."""
    choices = [c for c in choices_of(kind) if c is not None]
    if choices:
        return ", ".join(f"`{c}`" for c in choices)
    base = base_type(kind)
    noun = "`true` or `false`" if base is bool else "a table" if typing.get_origin(base) is dict else type_noun(base)
    return rule.describe(noun) if rule is not None else noun


def default_text(field: dataclasses.Field) -> str:
    """`required`, `unset` (a None default), or the default as TOML writes it."""
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "required"
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return f"`{list(value)}`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def field_rows(section: type[Section]) -> list[tuple[str, str, str, str]]:
    """(`table.field`, allowed, default, description) per field, in declaration order; a ValueError names a field
    declared without a description."""
    hints = typing.get_type_hints(section)
    rows = []
    for name, field in section.fields().items():
        description = field.metadata.get("description", "")
        if not description:
            raise ValueError(f"{section.table}.{name} is declared without a description")
        rows.append(
            (
                f"`{section.table}.{name}`",
                allowed_text(hints[name], field.metadata.get("rule")),
                default_text(field),
                description,
            )
        )
    return rows


def markdown_table(sections: Iterable[type[Section]]) -> str:
    """One Markdown table of every field of `sections`, in their order."""
    return HEADER + "".join(f"| {' | '.join(row)} |\n" for section in sections for row in field_rows(section))


def with_field_table(text: str, table: str) -> str:
    """`text` with what stands between `BEGIN` and `END` replaced by `table`."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"no generated field table here: the markers are {BEGIN!r} and {END!r}")
    return f"{text[: begin + len(BEGIN)]}\n{table}{text[end:]}"
