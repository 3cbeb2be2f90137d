"""Failed TLS handshakes, logged as one line each at most every few seconds, never as a traceback.

A TLS port sees plain HTTP, TCP health checks that connect and leave, scanners and clients that do not trust the
certificate; each of these ends the TLS handshake with an ``ssl.SSLError`` before any request exists. gevent would
print each one as a traceback; the worker hands them here instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .throttle import INTERVAL, Throttle

__all__ = ["INTERVAL", "TLSFailures"]

log = logging.getLogger("wsgi_ws")


class TLSFailures:
    """Counts failed TLS handshakes and logs the first of every :data:`INTERVAL` seconds, with how many it left out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL) -> None:
        self._throttle = Throttle(interval, clock)

    @property
    def count(self) -> int:
        """Failed TLS handshakes since the worker started."""
        return self._throttle.count

    def note(self, address: Any, error: BaseException) -> None:
        """A TLS handshake from ``address`` ended with ``error``: log it, unless a line went out less than
        :data:`INTERVAL` seconds ago (then it is counted in the next one)."""
        skipped = self._throttle.note()
        if skipped is None:
            return
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)
        reason = getattr(error, "reason", None) or type(error).__name__
        more = f"; {skipped} more failed since the last such line" if skipped else ""
        log.warning("tls: handshake with %s failed (%s: %s)%s", peer, type(error).__name__, reason, more)
