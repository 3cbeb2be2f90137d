"""The Python examples of the README and of the docs pages (docs/*.md): each one compiles, and every wsgi_ws import in
them resolves. The README is the short front page; most examples live in the pages it links to."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import textwrap

import pytest

from tests.server import ROOT
from wsgi_ws.options import WebSocketOptions

pytestmark = pytest.mark.unit

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    (page.relative_to(ROOT).as_posix(), textwrap.dedent(block))
    for page in PAGES
    for block in re.findall(r"^[ \t]*```python\n(.*?)^[ \t]*```", page.read_text(), re.S | re.M)
]


def test_the_readme_and_the_docs_have_examples() -> None:
    assert any(page == "README.md" for page, _ in BLOCKS), "the README's sample handler"
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", [block for _, block in BLOCKS], ids=[f"{page}-example-{n}" for n, (page, _) in enumerate(BLOCKS)])
def test_each_example_compiles_and_its_imports_resolve(block: str) -> None:
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wsgi_ws"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"from {node.module} import {alias.name}"


def _anchors(page: str) -> set[str]:
    """The anchors of a page's headings, as GitHub and MkDocs both make them for the headings these pages use."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", page, flags=re.S | re.M), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_readme_links_to_docs_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#([^)]+))?\)", (ROOT / "README.md").read_text())
    assert len({page for page, _ in links}) >= 10
    for page, anchor in links:
        assert (ROOT / page).is_file(), page
        assert not anchor or anchor in _anchors((ROOT / page).read_text()), f"{page}#{anchor}"


def _tables(text: str) -> list[str]:
    """Each Markdown table of ``text`` (its consecutive ``|`` lines), links written as from the docs folder."""
    tables = re.findall(r"(?:^\|.*\|\n)+", text + "\n", re.M)
    return [re.sub(r"\]\(docs/", "](", re.sub(r"\]\(docs/options\.md#", "](#", table)) for table in tables]


def test_every_table_of_the_readme_is_a_docs_page_s_row_for_row() -> None:
    """The README's tables (settings, options, benchmarks) are copies; a docs page has each whole, and is the one to
    edit: a row changed on one side only fails here."""
    pages = {page.name: page.read_text() for page in sorted((ROOT / "docs").glob("*.md"))}
    tables = _tables((ROOT / "README.md").read_text())
    assert len(tables) >= 6
    for table in tables:
        header_and_first_row = "".join(table.splitlines(keepends=True)[:3])
        holding = [name for name, text in pages.items() if header_and_first_row in text]
        assert holding, f"no docs page has the README's table:\n{table}"
        assert any(table in pages[name] for name in holding), f"{holding} has another version of:\n{table}"


def test_the_options_tables_list_every_option() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \|", (ROOT / "docs" / "options.md").read_text().split("\n## Options per route\n")[0], re.M)
    compression = re.findall(r"^\| `(compression[a-z_]*)` \|", (ROOT / "docs" / "options.md").read_text(), re.M)
    assert set(rows) | set(compression) == {field.name for field in dataclasses.fields(WebSocketOptions)}
