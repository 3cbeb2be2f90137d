"""A griffe extension for the docs build: docstrings written for Sphinx, rendered by mkdocstrings as Markdown.

- A role (``:class:`~wsgi_ws.x.Y```, ``:meth:`close```) becomes a link to the object when the API reference shows it,
  and plain code otherwise (the internals have no page): an *optional* cross-reference, so a role never fails the
  build. ``~`` shows the last name only, as in Sphinx. A Markdown cross-reference written in a docstring
  (``[text][wsgi_ws.options.configure]``) is required: one that resolves to nothing fails ``mkdocs build --strict``.
- reST's literal-block marker goes: a paragraph ending in ``::`` ends in ``:``, a ``::`` line alone is dropped; the
  indented block after it is then Markdown's indented code block.
- An attribute without a docstring takes the ``#:`` comment lines just above it (Sphinx's convention, which the
  options and the constants use) as its docstring.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")
LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", re.M)
LITERAL_AFTER = re.compile(r"(\S)::[ \t]*$", re.M)


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full path of ``target`` as seen from ``obj`` (its members, then its parents', as Sphinx looks), or ``target``."""
    scope: griffe.Object | None = obj
    while scope is not None:
        path = target if target.startswith("wsgi_ws") else f"{scope.path}.{target}"
        try:
            found = obj.modules_collection[path]
        except (KeyError, griffe.AliasResolutionError):
            pass
        else:
            try:
                return str(found.canonical_path)
            except griffe.AliasResolutionError:
                return path
        if target.startswith("wsgi_ws"):
            break
        scope = scope.parent
    return target


def _rewrite(obj: griffe.Object, text: str) -> str:
    def role(match: re.Match[str]) -> str:
        target = match.group(2).lstrip(".")
        title = target.rsplit(".", 1)[-1] if match.group(1) else target
        identifier = _resolve(obj, target)
        return f'<autoref optional identifier="{html.escape(identifier)}"><code>{html.escape(title)}</code></autoref>'

    return LITERAL_AFTER.sub(r"\1:", LITERAL_ALONE.sub("", ROLE.sub(role, text)))


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


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if isinstance(member, griffe.Object):  # an Alias is an import: its target is walked where it is defined
            found += _objects(member)
    return found


class Roles(griffe.Extension):
    """Docstrings as Markdown: roles as optional cross-references, no literal-block markers, ``#:`` comments."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None and (text := _comment_above(attr)) is not None:
            attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
