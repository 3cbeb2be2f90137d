"""Failed TLS handshakes, logged as one line each at most every few seconds, never as a traceback.

A TLS port sees plain HTTP, TCP health checks that connect and leave, scanners and clients that do not trust the
certificate; each of these ends the TLS handshake with an ``ssl.SSLError`` before any request exists. gevent would
print each one as a traceback; the worker hands them here instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["INTERVAL", "TLSFailures"]

log = logging.getLogger("wsgi_ws")

#: Seconds between two log lines about failed TLS handshakes; the failures in between are counted in the next one.
INTERVAL = 10.0


class TLSFailures:
    """Counts failed TLS handshakes and logs the first of every :data:`INTERVAL` seconds, with how many it left out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._unlogged = 0
        #: Failed TLS handshakes since the worker started.
        self.count = 0

    def note(self, address: Any, error: BaseException) -> None:
        """A TLS handshake from ``address`` ended with ``error``: log it, unless a line went out less than
        :data:`INTERVAL` seconds ago (then it is counted in the next one)."""
        now = self._clock()
        with self._lock:
            self.count += 1
            if now < self._next_at:
                self._unlogged += 1
                return
            skipped, self._unlogged = self._unlogged, 0
            self._next_at = now + self._interval
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)
        reason = getattr(error, "reason", None) or type(error).__name__
        more = f"; {skipped} more failed since the last such line" if skipped else ""
        log.warning("tls: handshake with %s failed (%s: %s)%s", peer, type(error).__name__, reason, more)
