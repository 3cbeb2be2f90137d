"""One value per process, made on first use: the hub, the per-IP counts, the expiry timers, the log filter."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerProcess"]

T = TypeVar("T")


class PerProcess(Generic[T]):
    """A value that ``make`` makes on the first :meth:`get`, once, even when threads race for it.

    With ``fresh_after_fork`` a forked child drops the value it inherited and makes its own on first use (for a value
    that owns a thread, which a child does not inherit).
    """

    __slots__ = ("_lock", "_make", "_value")

    def __init__(self, make: Callable[[], T], *, fresh_after_fork: bool = False) -> None:
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()
        if fresh_after_fork:
            os.register_at_fork(after_in_child=self._forget_in_child)

    def get(self) -> T:
        """The value, made now if no call made it before."""
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._value = self._make()
        return value

    def _forget_in_child(self) -> None:
        self._value = None
        self._lock = threading.Lock()  # the parent may have held it while forking
