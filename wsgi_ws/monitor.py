"""Watching every open WebSocket of a process: keep-alive pings and timeouts, and closing all on shutdown.

One greenlet (or thread) runs :meth:`ConnectionMonitor.run` for all connections, so an idle connection costs no
greenlet of its own. Each tick it looks at every connection: one silent for ``keep_alive_interval`` gets a ping; one
whose ping has gone unanswered (no pong, no data) for ``keep_alive_timeout`` is checked once more (data that the
busy handler has not read yet counts, as with ASP.NET's read-ahead) and then closed with 1011. Anything that may
block is done in a short-lived greenlet, so one stuck client never delays the others.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["ConnectionMonitor", "spawn_background"]

log = logging.getLogger("wsgi_ws")


class ConnectionMonitor:
    """The open connections of one process, and the keep-alive loop over them."""

    def __init__(
        self,
        keep_alive_interval: float | None,
        keep_alive_timeout: float | None,
        spawn: Callable[..., Any],
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep_alive_interval = keep_alive_interval
        self.keep_alive_timeout = keep_alive_timeout
        self._spawn = spawn
        self._sleep = sleep
        self._clock = clock
        self._connections: set[WebSocket] = set()
        self._running = False
        self.stopping = False

    @property
    def tick(self) -> float:
        """Seconds between two looks at the connections: a quarter of the shortest keep-alive time, 10 ms to 1 s."""
        times = [t for t in (self.keep_alive_interval, self.keep_alive_timeout) if t]
        return min(max(min(times) / 4, 0.01), 1.0) if times else 1.0

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, ws: WebSocket) -> None:
        """Watch an accepted connection; starts the loop on first use."""
        self._connections.add(ws)
        if not self._running and self.keep_alive_interval:
            self._running = True
            self._spawn(self.run)

    def discard(self, ws: WebSocket) -> None:
        """Stop watching a finished connection."""
        self._connections.discard(ws)

    def run(self) -> None:
        """The keep-alive loop (returns only when the process stops)."""
        while not self.stopping:
            self._sleep(self.tick)
            self.check(self._clock())

    def check(self, now: float) -> None:
        """One look at every connection."""
        interval, timeout = self.keep_alive_interval, self.keep_alive_timeout
        if not interval:
            return
        for ws in list(self._connections):
            if ws.keep_alive_busy or ws.closed:
                continue
            ping_sent_at = ws.ping_sent_at
            if ping_sent_at is None:
                if now - ws.last_received >= interval:
                    ws.keep_alive_busy = True
                    self._spawn(ws.keep_alive_ping, now)
            elif timeout is not None and now - ping_sent_at >= timeout:
                ws.keep_alive_busy = True
                self._spawn(ws.keep_alive_expired, timeout)

    def close_all(self, code: int, reason: str) -> int:
        """Close every open connection with ``code`` (each in its own greenlet); returns how many."""
        self.stopping = True
        connections = list(self._connections)
        for ws in connections:
            self._spawn(ws.close_quietly, code, reason)
        return len(connections)


def spawn_background(function: Callable[..., Any], *args: Any) -> object:
    """Run ``function(*args)`` in the background: a greenlet under gevent (cheap), a daemon thread otherwise."""
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            import gevent

            return gevent.spawn(function, *args)
    thread = threading.Thread(target=function, args=args, daemon=True)
    thread.start()
    return thread
