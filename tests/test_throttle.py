"""The throttle: one log line per key per interval, counting what it held back."""

from __future__ import annotations

import pytest

from wsgi_ws.integrations.throttle import Throttle

pytestmark = pytest.mark.unit


def test_one_line_per_key_per_interval_with_the_count_held_back() -> None:
    now = [100.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.note("a") == 0
    assert [throttle.note("a") for _ in range(5)] == [None] * 5
    assert throttle.note("b") == 0  # another key has its own interval
    now[0] += 10.0
    assert throttle.note("a") == 5
    assert throttle.count == 8


def test_the_keys_remembered_are_bounded() -> None:
    now = [0.0]
    throttle = Throttle(1.0, clock=lambda: now[0], max_keys=3)
    for key in range(3):
        throttle.note(key)
    now[0] += 2.0
    assert throttle.note("new") == 0 and len(throttle._keys) == 1  # the quiet ones were forgotten
