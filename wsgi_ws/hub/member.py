"""One connection's membership of the hub: its groups, and the messages waiting while its socket is full.

Delivery is write-through: a fan-out pass offers each member the frames of the messages published since the last
pass, joined into one ``bytes``, and a member that is not behind writes them straight to its socket without
waiting (:meth:`~wsgi_ws.connection.transport.Transport.try_write`), under the connection's write lock, so they never
interleave with the handler's own frames. What the socket does not take waits in the member's backlog, bounded by
``hub_queue_limit`` messages and ``hub_queue_bytes`` bytes, and a writer greenlet sends it through the same
session and corked writer as the handler's own sends. A frame the socket took in part is always finished first.

Over the bounds, ``hub_overflow`` decides: ``close`` (the default) stops queueing, lets the frame in flight finish,
sends close 1013 next and cuts TCP if the peer has not taken it within ``close_timeout``; ``drop-oldest`` drops the
oldest waiting messages; ``latest`` keeps only the newest. Every drop and every such close is counted; each member
is logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..connection.websocket import WebSocket
from ..exceptions import ConnectionClosed
from ..metrics import LAG_BOUNDS, Buckets
from ..protocol.errors import ProtocolError
from ..protocol.session import CloseCode
from .history import Position
from .outgoing import OWN_COMPRESSION, Format, FrameKind, Notice, Outgoing

__all__ = ["Counters", "Member", "close_without_waiting"]

log = logging.getLogger("wsgi_ws")

#: A writer hands the session at most this many bytes of backlog at a time.
WRITE_BATCH = 256 * 1024
SLOW_REASON = "too slow: fell behind the broadcast"


class Counters:
    """What one worker's hub has done (plain integers: counted without a lock, read by ``/stats``)."""

    __slots__ = ("closed_slow", "delivered", "dropped", "filled", "lag", "lost", "received", "replayed")

    def __init__(self) -> None:
        #: Messages this worker received from the backend (for groups it has members of).
        self.received = 0
        #: Messages handed to members' sockets or sessions (one per member per message).
        self.delivered = 0
        #: Messages a member never got because it was behind (``hub_overflow``, or closed as too slow).
        self.dropped = 0
        #: Members closed with 1013 for falling behind.
        self.closed_slow = 0
        #: Messages of recoverable groups sent to joining connections that resumed.
        self.replayed = 0
        #: Messages read from a recoverable group's history to fill a gap (an outage, crossed publishes).
        self.filled = 0
        #: Times members of a recoverable group were told messages were lost (``recovered=False``).
        self.lost = 0
        #: Seconds from this worker's receipt of a message to its write to a member's socket, one count per delivery.
        self.lag = Buckets(LAG_BOUNDS)

    def as_dict(self) -> dict[str, int]:
        """The counters, named as ``/stats`` shows them."""
        return {
            "hub_received": self.received,
            "hub_delivered": self.delivered,
            "hub_dropped": self.dropped,
            "hub_closed_slow": self.closed_slow,
            "hub_replayed": self.replayed,
            "hub_filled": self.filled,
            "hub_lost": self.lost,
        }


def frame_kind(ws: WebSocket) -> FrameKind:
    """Which frames suit this (accepted) connection: shared uncompressed, shared compressed, or its own."""
    session = ws.transport.session
    assert session is not None, "a member is an accepted connection"
    if not session.compressed:
        return None
    return session.shared_deflate or OWN_COMPRESSION


class Member:
    """One accepted connection in one or more groups of this worker's hub."""

    __slots__ = (
        "_mutex",
        "backlog",
        "backlog_bytes",
        "byte_limit",
        "cooperative",
        "counters",
        "formats",
        "groups",
        "holding",
        "kind",
        "leave",
        "leaving",
        "limit",
        "policy",
        "resumed_at",
        "spawn",
        "token",
        "transport",
        "warned",
        "writing",
        "ws",
    )

    def __init__(
        self,
        ws: WebSocket,
        token: bytes,
        counters: Counters,
        spawn: Callable[..., Any],
        leave: Callable[[WebSocket], None],
        cooperative: bool = False,
    ) -> None:
        self.ws = ws
        #: Greenlets under one event loop: the fan-out never yields while it writes, so it need not take the lock.
        self.cooperative = cooperative
        self.transport = ws.transport
        #: Identifies this membership in a published message that asked to skip its sender.
        self.token = token
        self.groups: set[str] = set()
        #: Per group joined with a render or announce: how its messages are sent.
        self.formats: dict[str, Format] = {}
        #: Per group being resumed: the live messages held back until its history is sent.
        self.holding: dict[str, list[Outgoing | Notice]] = {}
        #: Per group just resumed: the position it was sent up to; a fan-out pass already under way skips those.
        self.resumed_at: dict[str, Position] = {}
        self.kind = frame_kind(ws)
        options = ws.options
        self.limit, self.byte_limit, self.policy = options.hub_queue_limit, options.hub_queue_bytes, options.hub_overflow
        self.counters = counters
        self.spawn = spawn
        self.leave = leave  # the hub's leave_all
        self.backlog: deque[Outgoing] = deque()
        self.backlog_bytes = 0
        self.writing = False  # a writer greenlet is sending the backlog
        self.leaving = False  # closing as too slow, or gone: nothing more is queued
        self.warned = False
        self._mutex = threading.Lock()  # the backlog and the writing flag (never held across a wait)

    # Offering.

    def offer(self, items: list[Outgoing], blob: bytes | None) -> None:
        """Deliver ``items`` (their frames for this member's kind joined in ``blob``): now if the socket takes them.

        Never waits: what the socket does not take now goes to the backlog and a writer.
        """
        if self.leaving:
            return
        if blob is not None and not self.writing and not self.backlog:
            lock = self.transport.lock
            if self.cooperative:  # greenlets: nobody runs between this check and the write; no need to take it
                if lock.locked():
                    self._queue(items)
                    return
                items = self._write_through(items, blob)
            elif lock.acquire(False):
                try:
                    items = self._write_through(items, blob)
                finally:
                    lock.release()
            if not items:
                return
        self._queue(items)

    def _write_through(self, items: list[Outgoing], blob: bytes) -> list[Outgoing]:
        """Write ``blob`` straight to the socket (nobody else is writing); the items still to queue."""
        transport = self.transport
        session = transport.session
        if session is None or not session.writable_now():
            return items if session is not None and session.is_open else []  # else closing: nothing more for it
        sent = transport.try_write(blob)
        if sent == len(blob):
            self._delivered(items, len(items))
            return []
        if sent < 0:
            return []  # the socket broke; the handler sees the end
        return self._keep_unsent(items, sent) if sent else items

    def _keep_unsent(self, items: list[Outgoing], sent: int) -> list[Outgoing]:
        """After a partial write: queue the rest of the frame cut short first (lock held); the items not begun."""
        kind = self.kind
        end = 0
        for index, item in enumerate(items):
            frame = item.frame_for(kind)
            start, end = end, end + len(frame)
            if end > sent:
                session = self.transport.session
                assert session is not None
                session.send_frames([frame[sent - start :]])  # must be the next bytes on the wire
                self._delivered(items, index + 1)
                return items[index + 1 :]
        return []  # not reached: a partial write ends inside some frame

    def _delivered(self, items: list[Outgoing], count: int) -> None:
        """The first ``count`` of ``items`` went to the socket or the session: the connection's and the hub's counts,
        and the lag since the oldest of them arrived (counted for each of them)."""
        self.ws.messages_sent += count
        counters = self.counters
        counters.delivered += count
        counters.lag.add(time.monotonic() - items[0].received_at, count)

    def _queue(self, items: list[Outgoing]) -> None:
        """Add ``items`` to the backlog under the member's bounds and policy, and make sure a writer runs."""
        behind = 0  # over the bounds with hub_overflow=close: how far behind it was
        with self._mutex:
            if self.leaving:
                return
            backlog = self.backlog
            dropped = 0
            if self.policy == "latest" and items:
                dropped = len(backlog) + len(items) - 1
                backlog.clear()
                backlog.append(items[-1])
                self.backlog_bytes = items[-1].size
            else:
                backlog.extend(items)
                self.backlog_bytes += sum(item.size for item in items)
                if self._over_bounds() and self.policy == "close":
                    behind = self._start_closing()
                while backlog and self._over_bounds():  # drop-oldest
                    self.backlog_bytes -= backlog.popleft().size
                    dropped += 1
            start = not self.writing and not behind
            if start:
                self.writing = True
        if behind:
            self._warn(f"{behind} messages behind; closing it with 1013 so the others keep their pace")
            self.leave(self.ws)
            self.spawn(close_without_waiting, self.ws, CloseCode.TRY_AGAIN_LATER, SLOW_REASON)
            return
        if dropped:
            self.counters.dropped += dropped
            self._warn(f"dropping its oldest messages (hub_overflow={self.policy})")
        if start:
            self.spawn(self._write)

    def _over_bounds(self) -> bool:
        return len(self.backlog) > self.limit or self.backlog_bytes > self.byte_limit

    # Writing.

    def _take(self) -> list[Outgoing]:
        """Up to :data:`WRITE_BATCH` bytes of the backlog (the mutex is held)."""
        backlog = self.backlog
        batch: list[Outgoing] = []
        size = 0
        while backlog and size < WRITE_BATCH:
            item = backlog.popleft()
            size += item.size
            batch.append(item)
        self.backlog_bytes -= size
        return batch

    def _write(self) -> None:
        """The writer: send the backlog through the session and the corked writer, until it is empty."""
        transport = self.transport
        try:
            while True:
                with self._mutex:
                    batch = [] if self.leaving else self._take()
                    session = transport.session
                    if not batch and (self.leaving or session is None or not session.has_output()):
                        self.writing = False
                        return
                with transport.lock:
                    assert session is not None
                    if batch:
                        if self.kind == OWN_COMPRESSION:
                            for item in batch:
                                session.send_message(item.message)
                        else:
                            kind = self.kind
                            session.send_frames([item.frame_for(kind) for item in batch])
                        self._delivered(batch, len(batch))
                    if not transport.write_pending():
                        break
        except (ProtocolError, ConnectionClosed):  # the connection closed meanwhile: the rest is not for anyone
            pass
        with self._mutex:
            self.writing = False
            self.leaving = True
            self.backlog.clear()

    def stop(self) -> None:
        """The connection ended: queue nothing more, drop what waits (the writer, if any, then ends)."""
        with self._mutex:
            self.leaving = True
            self.backlog.clear()
            self.backlog_bytes = 0

    # Falling behind.

    def _start_closing(self) -> int:
        """Over the bounds with ``hub_overflow=close`` (the mutex is held): stop queueing, drop the backlog."""
        self.leaving = True
        behind = len(self.backlog)
        self.counters.dropped += behind
        self.counters.closed_slow += 1
        self.backlog.clear()
        self.backlog_bytes = 0
        return behind

    def _warn(self, what: str) -> None:
        if not self.warned:
            self.warned = True
            log.warning("hub: WebSocket %s from %s fell behind the broadcast: %s", self.ws.path, self.ws.peer, what)


def close_without_waiting(ws: WebSocket, code: int, reason: str) -> None:
    """Close ``ws`` from outside its handler without cutting a frame: the close frame goes right after what is in flight.

    Waits at most ``close_timeout`` for the connection's writer to finish its frame and for the socket to take the
    close frame, and as long again for the peer's answer (which the handler's receive reads); past either, TCP is cut.
    """
    transport = ws.transport
    timeout = ws.options.close_timeout
    session = transport.session
    if session is None or not transport.lock.acquire(timeout=timeout):
        ws.abort(code, reason)  # the frame in flight never finished: the peer reads nothing
        return
    try:
        session.send_close(code, reason)
        written = transport.write_pending(timeout)
        transport.note_closing()
    finally:
        transport.lock.release()
    if not written:
        transport.cut()
        return
    try:
        transport.wait_for(session, _never, time.monotonic() + timeout)  # returns once the peer's close (or EOF) is in
    except TimeoutError:
        transport.cut()


def _never() -> bool:
    return False
