"""Keep-alive for every open WebSocket of a process: pings, timeouts, and closing all on shutdown.

One greenlet (or thread) runs :meth:`ConnectionMonitor.run` for all connections, so an idle connection costs no
greenlet of its own. Each tick it asks every connection what is due (:func:`due`), by that connection's own
``keep_alive_interval`` and ``keep_alive_timeout``: one silent for the interval gets a ping; one whose ping has gone
unanswered (no pong, no data) for the timeout is checked once more (data that the busy handler has not read yet
counts, as with ASP.NET's read-ahead) and then closed with 1011. A ping that the socket takes at once, with nobody
else writing, is written by the loop itself; anything that may block runs in a short-lived greenlet, so one stuck
client never delays the others.

The keep-alive state of a connection (``last_received``, ``ping_sent_at``, ``keep_alive_busy``) lives in its
:class:`~wsgi_ws.connection.transport.Transport`, which updates it on every read; only this module's functions act
on it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol.session import CloseCode
from .roles import Closable

__all__ = ["ConnectionMonitor", "KeepAliveState", "KeptAlive", "due", "gevent_patched", "spawn_background", "tick_for"]

log = logging.getLogger("wsgi_ws")


class KeepAliveState(Protocol):
    """A connection's keep-alive state (its :class:`~wsgi_ws.connection.transport.Transport` keeps it)."""

    last_received: float
    ping_sent_at: float | None
    keep_alive_busy: bool

    def read_ahead(self) -> None:
        """Read what has arrived, without blocking, if nobody else is reading."""

    def ping_now(self, frame: bytes) -> bool:
        """Write ``frame`` at once if nobody else is writing and the socket takes it whole; False: send it the usual way."""
        ...


class KeptAlive(Closable, Protocol):
    """What keep-alive needs of a connection (``WebSocket`` has it)."""

    @property
    def transport(self) -> KeepAliveState: ...

    @property
    def keep_alive(self) -> tuple[float | None, float | None]:
        """``(keep_alive_interval, keep_alive_timeout)`` of this connection's options."""

    def ping(self, data: bytes = b"") -> None: ...

    def abort(self, code: int, reason: str) -> None: ...


@functools.lru_cache(maxsize=64)  # asked at every accept, with the few pairs the options have
def tick_for(interval: float | None, timeout: float | None) -> float:
    """Seconds between two looks at a connection: a quarter of its shortest keep-alive time, 10 ms to 1 s."""
    times = [t for t in (interval, timeout) if t]
    return min(max(min(times) / 4, 0.01), 1.0) if times else 1.0


def due(ws: KeptAlive, now: float) -> functools.partial[None] | None:
    """The keep-alive action ``ws`` needs at monotonic time ``now`` (run it in its own greenlet), or None."""
    interval, timeout = ws.keep_alive
    transport = ws.transport
    if not interval or transport.keep_alive_busy or ws.closed:
        return None
    ping_sent_at = transport.ping_sent_at
    if ping_sent_at is None:
        if now - transport.last_received < interval:
            return None
        transport.keep_alive_busy = True
        return functools.partial(_ping, ws, now)
    if timeout is not None and now - ping_sent_at >= timeout:
        transport.keep_alive_busy = True
        return functools.partial(_expired, ws, timeout)
    return None


#: The payload of keep-alive pings.
KEEP_ALIVE_DATA = b"keep-alive"
#: The keep-alive ping as a server frame (FIN, opcode 9, unmasked): written as is when the socket takes it at once.
KEEP_ALIVE_PING = bytes([0x89, len(KEEP_ALIVE_DATA)]) + KEEP_ALIVE_DATA


def _ping_at_once(ws: KeptAlive, now: float) -> bool:
    """Send the keep-alive ping from the monitor itself when that cannot block (saves a greenlet per ping)."""
    transport = ws.transport
    if not transport.ping_now(KEEP_ALIVE_PING):
        return False
    transport.ping_sent_at = now
    transport.keep_alive_busy = False
    return True


def _ping(ws: KeptAlive, now: float) -> None:
    transport = ws.transport
    try:
        transport.ping_sent_at = now
        with contextlib.suppress(OSError):  # ConnectionClosed is an OSError too
            ws.ping(KEEP_ALIVE_DATA)
    finally:
        transport.keep_alive_busy = False


def _expired(ws: KeptAlive, timeout: float) -> None:
    """The ping went unanswered for ``timeout`` s: look once more for unread data, else close with 1011."""
    transport = ws.transport
    try:
        sent = transport.ping_sent_at
        if sent is None or ws.closed:
            return
        transport.read_ahead()  # nobody reading: read what has arrived, as .NET does
        if transport.last_received >= sent:
            return
        log.warning(
            "ws.timeout path=%s peer=%s: no pong or data within %.1f s of a keep-alive ping; "
            "the client stopped answering, closing with 1011",
            ws.path,
            ws.peer,
            timeout,
        )
        ws.abort(CloseCode.INTERNAL_ERROR, "keep-alive timeout")
    finally:
        transport.keep_alive_busy = False


class ConnectionMonitor:
    """The open connections of one process (or one middleware), and the keep-alive loop over them.

    ``spawn(function, *args)`` starts ``function`` in the background; ``sleep`` and ``clock`` are injectable so the
    loop can be tested with a fake clock.
    """

    def __init__(
        self,
        spawn: Callable[..., Any],
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spawn = spawn
        self._sleep = sleep
        self._clock = clock
        self._connections: set[KeptAlive] = set()
        self._running = False
        #: Seconds between two looks: the shortest tick any watched connection has needed so far.
        self.tick = 1.0
        self.stopping = False

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, ws: KeptAlive) -> None:
        """Watch an accepted connection; starts the loop when the first connection with pings on arrives."""
        self._connections.add(ws)
        interval, timeout = ws.keep_alive
        if interval:
            self.tick = min(self.tick, tick_for(interval, timeout))
            if not self._running:
                self._running = True
                self._spawn(self.run)

    def discard(self, ws: KeptAlive) -> None:
        """Stop watching a finished connection."""
        self._connections.discard(ws)

    def run(self) -> None:
        """The keep-alive loop (returns only when the process stops)."""
        while not self.stopping:
            self._sleep(self.tick)
            self.check(self._clock())

    def check(self, now: float) -> None:
        """One look at every connection: start what is due."""
        for ws in list(self._connections):
            action = due(ws, now)
            if action is not None:
                if action.func is _ping and _ping_at_once(ws, now):
                    continue
                self._spawn(action)

    def close_all(self, code: int, reason: str) -> int:
        """Close every open connection with ``code`` (each in its own greenlet); returns how many."""
        self.stopping = True
        connections = list(self._connections)
        for ws in connections:
            self._spawn(_close_quietly, ws, code, reason)
        return len(connections)


def _close_quietly(ws: KeptAlive, code: int, reason: str) -> None:
    with contextlib.suppress(OSError):  # gone already: every error of ours is an OSError (gevent-websocket's base)
        ws.close(code, reason)


def gevent_patched() -> bool:
    """True when gevent has patched ``threading`` (gunicorn's gevent worker): background work is then greenlets."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))


def spawn_background(function: Callable[..., Any], *args: Any) -> object:
    """Run ``function(*args)`` in the background: a greenlet under gevent (cheap), a daemon thread otherwise."""
    if gevent_patched():
        import gevent

        return gevent.spawn(function, *args)
    thread = threading.Thread(target=function, args=args, daemon=True)
    thread.start()
    return thread
