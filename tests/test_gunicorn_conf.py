"""The sample's gunicorn.conf.py: its list of WebSocket defaults stays true, and it changes none of them."""

from __future__ import annotations

import ast
import dataclasses
import re

import pytest

from tests.server import ROOT
from wsgi_ws.options import WebSocketOptions

pytestmark = pytest.mark.unit

CONF = ROOT / "gunicorn.conf.py"
LISTED = re.compile(r"^#   (?P<name>[a-z_]+) = (?P<value>.+?)\s{2,}\S")


def listed_defaults() -> dict[str, object]:
    found = {}
    for line in CONF.read_text().splitlines():
        match = LISTED.match(line)
        if match:
            found[match["name"]] = ast.literal_eval(match["value"])
    return found


def test_every_option_is_listed_with_its_true_default() -> None:
    defaults = {field.name: getattr(WebSocketOptions(), field.name) for field in dataclasses.fields(WebSocketOptions)}
    assert listed_defaults() == defaults


def test_the_sample_passes_no_option_of_its_own() -> None:
    calls = [
        node
        for node in ast.walk(ast.parse(CONF.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "configure"
    ]
    assert len(calls) == 1 and not calls[0].args and not calls[0].keywords
