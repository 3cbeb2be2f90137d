"""Message limits on an open connection: messages and bytes per second (token buckets), over them close 1008.

``max_messages_per_second`` and ``max_bytes_per_second`` (both off by default, per route too) bound what a handler
takes with ``receive()`` or ``for message in ws``. Each is a token bucket holding one second's worth: a burst of that
size passes, then the steady rate. A connection over either is closed with 1008 (policy violation) and a reason
naming the limit; its ``receive()`` returns None, and the log says so once (``ws.limit``). Parts read with
``receive_partial()`` are not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["MessageRate", "TokenBucket", "refuse"]

log = logging.getLogger("wsgi_ws")


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` kept (by default ``rate``: one second's worth); full at first."""

    __slots__ = ("_at", "_clock", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = rate if capacity is None else capacity
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()

    def seconds_until(self, amount: float = 1.0) -> float:
        """Seconds until the bucket holds ``amount`` tokens (0 if it does now); ``amount`` must fit its capacity."""
        tokens = min(self.capacity, self._tokens + (self._clock() - self._at) * self.rate)
        return max(0.0, (amount - tokens) / self.rate)

    def full(self) -> bool:
        """True when the bucket has refilled to its capacity (nobody took from it lately: it can be forgotten)."""
        return self.seconds_until(self.capacity) == 0.0

    def take(self, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if the bucket holds them (refilled for the time since the last take); else False."""
        now = self._clock()
        tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens < amount:
            self._tokens = tokens
            return False
        self._tokens = tokens - amount
        return True


class MessageRate:
    """The message limits of one connection; :meth:`allows` is asked once per message received."""

    __slots__ = ("_bytes", "_messages", "reason")

    def __init__(self, messages: float | None, size: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._messages = TokenBucket(messages, clock) if messages else None
        self._bytes = TokenBucket(float(size), clock) if size else None
        #: Why the last refused message was refused (the close reason).
        self.reason = ""

    @classmethod
    def of(cls, messages: float | None, size: int | None) -> MessageRate | None:
        """The limits, or None when both are off (then nothing is checked per message)."""
        return cls(messages, size) if messages or size else None

    def allows(self, message: str | bytes) -> bool:
        """True while the connection stays within both limits; False (with :attr:`reason`) once it goes over one."""
        if self._messages is not None and not self._messages.take():
            self.reason = f"over {self._messages.rate:g} messages per second"
            return False
        if self._bytes is not None:
            size = len(message.encode("utf-8")) if isinstance(message, str) else len(message)
            if size > self._bytes.rate or not self._bytes.take(size):
                self.reason = f"over {self._bytes.rate:g} bytes per second"
                return False
        return True


class _Closable(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def peer(self) -> str: ...

    def close(self, code: int = 1000, reason: str | bytes = "") -> None: ...


def refuse(ws: _Closable, rate: MessageRate | None) -> None:
    """Close ``ws`` with 1008 and the reason ``rate`` gave (logged once, as ``ws.limit``)."""
    reason = rate.reason if rate is not None else "over a message limit"
    log.info("ws.limit path=%s peer=%s: %s; closing with 1008", ws.path, ws.peer, reason)
    ws.close(1008, reason)
