"""A griffe extension for the docs build: docstrings written for Sphinx, rendered by mkdocstrings as Markdown.

- The roles (``:class:`~wsgi_ws.x.Y```) become code: ``:role:`~a.b.C``` is shown as ``C``, ``:role:`a.b.C``` as
  ``a.b.C``; Markdown would otherwise show ``:class:`` before the code span.
- reST's literal-block marker goes: a paragraph ending in ``::`` ends in ``:``, a ``::`` line alone is dropped; the
  indented block after it is then Markdown's indented code block.
- An attribute without a docstring takes the ``#:`` comment lines just above it (Sphinx's convention, which the
  options and the constants use) as its docstring.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")
LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", re.M)
LITERAL_AFTER = re.compile(r"(\S)::[ \t]*$", re.M)


def _as_code(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"``{target.rsplit('.', 1)[-1] if match.group(1) else target}``"


def _comment_above(attr: griffe.Attribute) -> str | None:
    if attr.lineno is None or attr.filepath is None or isinstance(attr.filepath, list):
        return None
    lines = attr.filepath.read_text().splitlines()
    comment: list[str] = []
    number = attr.lineno - 2  # the line above the attribute, 0-based
    while number >= 0 and lines[number].strip().startswith("#:"):
        comment.insert(0, lines[number].strip()[2:].strip())
        number -= 1
    return " ".join(comment) or None


class Roles(griffe.Extension):
    """Rewrite the roles of every docstring griffe loads; give ``#:``-commented attributes their docstring."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None and (text := _comment_above(attr)) is not None:
            attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(_as_code, obj.docstring.value)
            obj.docstring.value = LITERAL_AFTER.sub(r"\1:", LITERAL_ALONE.sub("", text))
