"""Waiting in tests on a condition another process makes true: polled, bounded, never a bare sleep as the wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.constants import TIMEOUT

__all__ = ["wait_until"]


def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> float:
    """Poll ``condition`` every 20 ms until it is true; fail with ``what`` after ``timeout``. Returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return time.monotonic() - started
