"""A worker's view of its recoverable groups: every message once, in order, gaps filled from history or announced.

Per recoverable group the worker keeps the position of the last message it handed to its members. A message that
arrives with the next offset goes on; one already seen is dropped (a duplicate, or a late one after a gap was
filled); one beyond the next means messages were lost on the way (Redis went away, or a cluster's publishes crossed),
and they are read from the group's history first. A new epoch, or a gap the history no longer covers, reaches the
members as a :class:`~wsgi_ws.hub.outgoing.Notice` (``recovered=False``): never a silent gap.

A join that asks to resume has its live messages held back while the history is read; :func:`missed_since` then
says what it gets: what it missed and what was held, each once, before it goes live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .backends import Backend
from .history import History, HistoryRead, Position, Recovery
from .member import Counters
from .outgoing import Notice, Outgoing

__all__ = ["Tracks", "missed_since", "parse_since"]

log = logging.getLogger("wsgi_ws")

Item = Outgoing | Notice
#: How far back a gap is filled in a group this worker keeps no history for (messages with positions came anyway:
#: another worker or publisher keeps it).
FALLBACK_HISTORY = History(1000, 300.0)


class Tracks:
    """The last position handed on per recoverable group of this worker, and how what arrives is put in order.

    ``history_for(group)`` says how much of a group is kept (how far back a gap can be filled from).
    """

    def __init__(self, backend: Backend, history_for: Callable[[str], History | None], counters: Counters) -> None:
        self._backend = backend
        self._history_for = history_for
        self._counters = counters  # filled and lost are counted here
        self._last: dict[str, Position] = {}
        self.lock = threading.RLock()  # held while a group's order is decided, reads of the history included

    def arrange(self, group: str, message: Outgoing) -> list[Item]:
        """What goes to the members, in order, now that ``message`` (with its position) arrived."""
        position = message.position
        assert position is not None
        with self.lock:
            last = self._last.get(group)
            if last is None or (last.epoch == position.epoch and position.offset == last.offset + 1):
                self._last[group] = position
                return [message]
            if last.epoch == position.epoch and position.offset <= last.offset:
                return []  # seen already
            items = self._fill(group, last, position.epoch, position.offset - 1)
            self._last[group] = position
            return [*items, message]

    def catch_up(self, group: str) -> list[Item]:
        """What this worker's members of ``group`` missed while the backend was away (read from its history)."""
        with self.lock:
            last = self._last.get(group)
            if last is None:
                return []
            items = self._fill(group, last, None, None)
            return items

    def start_at(self, group: str, read: HistoryRead) -> None:
        """A first join read the group's history: later messages follow on from its top, unless some already came."""
        with self.lock:
            if group not in self._last and read.epoch:
                self._last[group] = Position(read.epoch, read.top)

    def forget(self, group: str) -> None:
        """This worker's last member of ``group`` left."""
        with self.lock:
            self._last.pop(group, None)

    def _fill(self, group: str, last: Position, epoch: str | None, upto: int | None) -> list[Item]:
        """The messages after ``last`` from history, up to offset ``upto`` of ``epoch`` (None, None: all there are,
        and the group's position moves to the newest); a Notice first where some are gone (the lock is held)."""
        history = self._history_for(group) or FALLBACK_HISTORY
        continuing = epoch is None or epoch == last.epoch
        read = read_history(self._backend, group, last.offset if continuing else 0, history) or HistoryRead("", 0, 1, [])
        after = last.offset if read.epoch == last.epoch else 0
        items: list[Item] = []
        if read.epoch != last.epoch or read.first > after + 1:
            self._counters.lost += 1
            items.append(Notice(group, Recovery(False, 0, Position(read.epoch, read.top) if read.epoch else None)))
            log.warning("hub: messages of group %r were lost for this worker's members (history gone or too short)", group)
        if epoch is None or read.epoch == epoch:
            for entry in read.entries:
                if entry.offset > after and (upto is None or entry.offset <= upto):
                    items.append(Outgoing(group, entry.message, entry.sender, Position(read.epoch, entry.offset)))
        self._counters.filled += sum(isinstance(item, Outgoing) for item in items)
        if epoch is None:  # catching up: the group is now where the history is
            if read.epoch:
                self._last[group] = Position(read.epoch, max(read.top, after))
            else:
                self._last.pop(group, None)
        return items


#: Seconds between tries of a history read that failed (Redis dropped the connection, say); then it is given up.
READ_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def read_history(backend: Backend, group: str, after: int, history: History) -> HistoryRead | None:
    """The group's history after ``after``, tried again for about 3 s while the backend fails; None if it never
    answered (logged): what it holds is then unknown, and whoever asked must say messages may be lost."""
    for delay in (*READ_RETRIES, None):
        try:
            return backend.read_history(group, after, history)
        except Exception as exc:  # whatever the backend raises: Redis, connections
            if delay is None:
                log.warning("hub: cannot read the history of group %r (%s)", group, exc)
                return None
            time.sleep(delay)
    return None  # not reached


def parse_since(since: str | Position | None) -> tuple[Position | None, bool]:
    """The position a join asked to resume from, and whether it was well-formed (a bad one cannot be recovered)."""
    if since is None or isinstance(since, Position):
        return since, True
    if since == "":
        return None, True
    try:
        return Position.parse(since), True
    except ValueError:
        return None, False


def missed_since(group: str, since: Position | None, read: HistoryRead | None, held: list[Item]) -> tuple[Recovery, list[Item]]:
    """What a join resuming from ``since`` gets: the recovery to announce and what to send (the messages it missed
    from ``read``, then those ``held`` back meanwhile that are newer)."""
    if read is None:  # the history could not be read
        return Recovery(since is None, 0, None), [item for item in held if item.position is not None]
    if since is None:
        recovered, entries = True, []
    elif read.reaches(since):
        recovered, entries = True, [entry for entry in read.entries if entry.offset > since.offset]
    elif read.epoch and since.epoch == read.epoch and since.offset < read.first - 1:
        recovered, entries = False, list(read.entries)  # trimmed: what there is
    else:
        recovered, entries = False, []
    last = entries[-1].offset if entries else (since.offset if recovered and since is not None else read.top)
    items: list[Item] = [Outgoing(group, e.message, e.sender, Position(read.epoch, e.offset)) for e in entries]
    for item in held:
        position = item.position
        if position is None or position.epoch != read.epoch or position.offset > last:
            items.append(item)
    position = Position(read.epoch, last) if read.epoch else None
    return Recovery(recovered, len(entries), position), items
