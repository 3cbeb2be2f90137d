"""Recoverable groups: where a message stands in its group, the history a backend keeps, and what a join recovered.

A group with history on gives every published message a :class:`Position`: the group's *epoch* (a random name the
history got when it was created; a new one means the old history is gone, for example Redis restarted without its
data) and an *offset* counting the group's messages from 1. Positions go to clients as opaque strings
(:meth:`Position.token`); a client that comes back with the last one it saw gets exactly what it missed, or is told
``recovered=False`` when the history no longer reaches back that far.

In memory, :class:`MemoryHistory` keeps one worker's history with the same contract; Redis keeps it in a Stream per
group (:mod:`wsgi_ws.hub.redis_streams`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..protocol.assembler import Message

__all__ = ["Delivery", "Entry", "History", "HistoryRead", "MemoryHistory", "Position", "Recovery", "new_epoch"]


def new_epoch() -> str:
    """A fresh epoch name: 8 random hex digits."""
    return os.urandom(4).hex()


class Position(NamedTuple):
    """Where a message stands in its group: the history's epoch and the message's offset (from 1)."""

    epoch: str
    offset: int

    def token(self) -> str:
        """The position as the opaque string clients keep and send back (``since``)."""
        return f"{self.epoch}-{self.offset}"

    @classmethod
    def parse(cls, token: str) -> Position:
        """The position a :meth:`token` names; ``ValueError`` for anything else (a client's bad ``since``)."""
        epoch, sep, offset = token.rpartition("-")
        if not sep or not epoch or len(epoch) > 64 or not offset.isdigit() or len(offset) > 19:
            raise ValueError(f"not a position: {token[:80]!r}")
        return cls(epoch, int(offset))


@dataclass(frozen=True)
class History:
    """How much of a group's past is kept: at most ``size`` messages (Redis trims approximately), each ``ttl`` seconds
    after the group's last publish."""

    size: int
    ttl: float


class Entry(NamedTuple):
    """One message of a group's history."""

    offset: int
    message: Message
    sender: bytes


@dataclass(frozen=True)
class HistoryRead:
    """What a backend's history of a group holds after some offset.

    ``epoch`` is ``""`` when the group has no history (never published, expired, or lost); ``top`` is the offset of
    its newest message (0 if none); ``first`` the oldest offset still kept (``top + 1`` when none is).
    """

    epoch: str
    top: int
    first: int
    entries: list[Entry]

    def reaches(self, since: Position) -> bool:
        """True when this history holds every message after ``since`` (same epoch, nothing trimmed in between)."""
        return bool(self.epoch) and since.epoch == self.epoch and self.first - 1 <= since.offset <= self.top


@dataclass(frozen=True)
class Recovery:
    """What joining a recoverable group gave a connection.

    ``recovered`` is False when some messages since the position it asked for are gone (history too short, expired,
    or lost with Redis): the connection got what there was, and the app should reload its state. ``missed`` is how
    many messages were replayed; ``position`` the group's position when it joined (None: nothing published yet).
    """

    recovered: bool
    missed: int
    position: Position | None


@dataclass(frozen=True)
class Delivery:
    """A message of a recoverable group on its way to a member, for a join's ``render`` to turn into what is sent."""

    group: str
    message: Message
    position: Position


class _Stream:
    __slots__ = ("entries", "epoch", "top", "touched", "ttl")

    def __init__(self, ttl: float) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.entries: deque[Entry] = deque()
        self.touched = 0.0
        self.ttl = ttl


class MemoryHistory:
    """One process's histories (the in-memory backend's): the same positions and trimming as Redis, within a worker."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._streams: dict[str, _Stream] = {}
        self._clock = clock

    def append(self, group: str, message: Message, sender: bytes, history: History) -> Position:
        """Keep ``message`` in ``group``'s history; its position."""
        now = self._clock()
        stream = self._live(group, now)
        if stream is None:
            stream = self._streams[group] = _Stream(history.ttl)
        stream.top += 1
        stream.touched, stream.ttl = now, history.ttl
        stream.entries.append(Entry(stream.top, message, sender))
        while len(stream.entries) > history.size:
            stream.entries.popleft()
        return Position(stream.epoch, stream.top)

    def read(self, group: str, after: int, history: History) -> HistoryRead:
        """The messages of ``group`` after offset ``after`` (at most ``history.size``, oldest first); a group without
        history gets an empty one."""
        now = self._clock()
        stream = self._live(group, now)
        if stream is None:
            stream = self._streams[group] = _Stream(history.ttl)
            stream.touched = now
        limit = history.size
        first = stream.entries[0].offset if stream.entries else stream.top + 1
        skip = max(0, after - first + 1)  # offsets are consecutive
        entries = list(itertools.islice(stream.entries, skip, skip + limit))
        return HistoryRead(stream.epoch, stream.top, first, entries)

    def _live(self, group: str, now: float) -> _Stream | None:
        stream = self._streams.get(group)
        if stream is not None and now - stream.touched > stream.ttl:
            del self._streams[group]  # expired, as a Redis key with its TTL would
            return None
        return stream
