"""Rewrite the protocol field table of docs/protocols.md from the field declarations (rkdbench/config/protocol.py:
each field's type, default, allowed values and description). Run it after adding or changing a protocol field;
tests/config/test_protocol_docs.py fails while the doc's table is stale.

    python scripts/protocol_docs.py
"""

from __future__ import annotations

from pathlib import Path

from rkdbench.config.field_docs import with_field_table
from rkdbench.config.protocol import field_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocols.md"


def main() -> None:
    text = DOC.read_text()
    updated = with_field_table(text, field_table())
    if updated == text:
        print(f"{DOC}: the field table is current")
        return
    DOC.write_text(updated)
    print(f"{DOC}: field table rewritten")


if __name__ == "__main__":
    main()
