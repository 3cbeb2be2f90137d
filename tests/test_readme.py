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


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line), up to the next heading of that level."""
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def _option_rows(text: str) -> list[str]:
    """The rows of the option tables (a backquoted option name first), links written as from the docs folder."""
    rows = re.findall(r"^\| `[a-z_]+` \|.*$", text, re.M)
    return [re.sub(r"\]\(docs/", "](", re.sub(r"\]\(docs/options\.md#", "](#", row)) for row in rows]


def test_the_readmes_options_table_is_the_options_page_s() -> None:
    """Both list every option; docs/options.md is the one to edit, and the README's copy must follow it."""
    readme = _option_rows(_section((ROOT / "README.md").read_text(), "## Options"))
    page_text = (ROOT / "docs" / "options.md").read_text()
    page = _option_rows(page_text.split("\n## Options per route\n")[0] + _section(page_text, "## Compression"))
    assert readme == page, "\n".join(sorted(set(readme) ^ set(page)))
    documented = {row.split("`")[1] for row in page}
    assert documented == {field.name for field in dataclasses.fields(WebSocketOptions)}
