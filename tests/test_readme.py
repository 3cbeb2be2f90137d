"""The README's Python examples: each one compiles, and every wsgi_ws import in them resolves."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap

import pytest

from tests.server import ROOT

pytestmark = pytest.mark.unit

BLOCKS = [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)]


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example-{n}" for n in range(len(BLOCKS))])
def test_each_example_compiles_and_its_imports_resolve(block: str) -> None:
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wsgi_ws"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"from {node.module} import {alias.name}"
