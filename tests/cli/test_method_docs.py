"""Every registered method has a docs page, and the page is exactly what the code generates (so formulas,
defaults and attack settings in the docs cannot drift from the implementation)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rkdbench
from rkdbench.app.method_docs import render_method_page

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methods"


@pytest.mark.parametrize("name", rkdbench.list_components("method"))
def test_method_page_exists_and_matches_the_code(name):
    page = DOCS / f"{name}.md"
    assert page.is_file(), f"run `rkdbench method-docs` to write {page}"
    assert page.read_text() == render_method_page(name), f"{page} is stale: run `rkdbench method-docs`"


def test_index_lists_every_method():
    index = (DOCS.parent / "methods.md").read_text()
    for name in rkdbench.list_components("method"):
        assert f"methods/{name}.md" in index
