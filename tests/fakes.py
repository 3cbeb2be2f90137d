"""Fakes shared by the unit tests: a spawn that runs nothing until told to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Spawner:
    """Stands in for ``gevent.spawn``: remembers what was started; :meth:`run_all` runs it (and what that starts)."""

    def __init__(self) -> None:
        self.started: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def __call__(self, function: Callable[..., Any], *args: Any) -> None:
        self.started.append((function, args))

    def run_all(self) -> int:
        """Run everything started so far, in order, until nothing is left; returns how many ran."""
        count = 0
        while self.started:
            function, args = self.started.pop(0)
            function(*args)
            count += 1
        return count
