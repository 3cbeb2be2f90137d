"""Per-IP limits, answered before any 101: open WebSockets per client IP, and new ones per IP per second.

``max_connections_per_ip`` caps the WebSockets open at once from one client IP: in this worker, or, when the hub's
Redis is configured (``hub_url``), on every worker of every machine sharing it (:mod:`wsgi_ws.hub.ip_counts`).
``max_connection_rate_per_ip`` is a token bucket per IP in each worker: a burst of one second's worth (at least one),
then the steady rate. Both are off by default. Over either, the upgrade is answered ``429 Too Many Requests`` with
``Retry-After``, counted (``refused`` and ``limited`` in ``/stats``), and logged as ``ws.refuse`` once per IP every
10 s, with how many were held back. The client IP is the peer's, or a trusted proxy's ``X-Forwarded-For``
(:mod:`wsgi_ws.integrations.proxies`).

The server's limits are checked for every upgrade request before the application runs; a route's own limits (or a
middleware's, under our worker) are checked again before its handler runs, counted for that route alone: a route can
narrow the server's limits, not widen them. A connection counts from its admission until its handler returns.
If Redis cannot be reached, connections are counted in this worker only until it is back (logged once a minute).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..connection.info import peer_of
from ..connection.limits import TokenBucket
from ..options import WebSocketOptions, current_options
from ..per_process import PerProcess
from .proxies import client_ip
from .throttle import Throttle
from .wsgi import HTTPErrorApp

if TYPE_CHECKING:
    from ..hub.ip_counts import SharedCounts

__all__ = ["CAP_RETRY_AFTER", "LIMIT_OPTIONS", "SERVER_SCOPE", "Admission", "Release", "admit", "current_admission"]

log = logging.getLogger("wsgi_ws")

#: The scope of the server's own limits (a route's scope is its rule).
SERVER_SCOPE = ""
#: ``Retry-After`` seconds when an IP has its share of open connections (one of them must end first).
CAP_RETRY_AFTER = 5
#: The options that set per-IP limits.
LIMIT_OPTIONS = frozenset({"max_connections_per_ip", "max_connection_rate_per_ip"})
#: Buckets kept before the full ones (IPs quiet for a while) are forgotten.
_MAX_BUCKETS = 10_000

#: Called once when an admitted connection's handler has returned.
Release = Callable[[], None]


class Admission:
    """The per-IP counts and buckets of one process. ``shared`` (made on first need) counts across workers."""

    def __init__(
        self,
        shared: Callable[[], SharedCounts | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared_factory = shared
        self._shared: SharedCounts | None = None
        self._shared_made = False
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], int] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._refusals = Throttle(clock=clock)
        self._outages = Throttle(interval=60.0, clock=clock)

    def admit(self, environ: Mapping[str, Any], options: WebSocketOptions, scope: str = SERVER_SCOPE) -> HTTPErrorApp | Release | None:
        """Check ``options``' per-IP limits for this request: the 429 answer, a :data:`Release` to call when the
        connection's handler has returned, or None when nothing was counted."""
        cap, rate = options.max_connections_per_ip, options.max_connection_rate_per_ip
        if cap is None and rate is None:
            return None
        ip = client_ip(environ)
        key = (scope, ip)
        if rate is not None:
            wait = self._over_rate(key, rate)
            if wait:
                return self._refuse(environ, ip, f"over {rate:g} new connections per second from {ip}", wait, "ip_rate")
        if cap is None:
            return None
        return self._take(environ, key, cap)

    def open_from(self, ip: str, scope: str = SERVER_SCOPE) -> int:
        """Connections from ``ip`` this process counts now (in the scope, and when not counted in Redis)."""
        with self._lock:
            return self._open.get((scope, ip), 0)

    def _over_rate(self, key: tuple[str, str], rate: float) -> int:
        """0 if a new connection fits ``key``'s bucket (and takes a token), else the seconds to wait (at least 1)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate:
                if len(self._buckets) >= _MAX_BUCKETS:
                    self._buckets = {k: b for k, b in self._buckets.items() if not b.full()}
                bucket = self._buckets[key] = TokenBucket(rate, self._clock, max(1.0, rate))
            if bucket.take():
                return 0
            return max(1, math.ceil(bucket.seconds_until()))

    def _take(self, environ: Mapping[str, Any], key: tuple[str, str], cap: int) -> HTTPErrorApp | Release:
        scope, ip = key
        shared = self._shared_counts()
        if shared is not None:
            try:
                open_now = shared.acquire(scope, ip, cap)
            except Exception as error:  # redis.RedisError and its kin: fall back to this worker's own count
                self._outage(error)
            else:
                if open_now is None:
                    return lambda: self._release_shared(shared, scope, ip)
                return self._refuse(
                    environ, ip, f"{open_now} connections open from {ip} (max_connections_per_ip={cap})", CAP_RETRY_AFTER, "ip_connections"
                )
        with self._lock:
            count = self._open.get(key, 0)
            if count < cap:
                self._open[key] = count + 1
                return lambda: self._release_local(key)
        return self._refuse(
            environ, ip, f"{count} connections open from {ip} (max_connections_per_ip={cap})", CAP_RETRY_AFTER, "ip_connections"
        )

    def _release_local(self, key: tuple[str, str]) -> None:
        with self._lock:
            count = self._open.get(key, 0) - 1
            if count > 0:
                self._open[key] = count
            else:
                self._open.pop(key, None)

    def _release_shared(self, shared: SharedCounts, scope: str, ip: str) -> None:
        try:
            shared.release(scope, ip)
        except Exception as error:  # the count stays one too high until this worker's entry is reaped or Redis is back
            self._outage(error)

    def _shared_counts(self) -> SharedCounts | None:
        if not self._shared_made:
            with self._lock:
                if not self._shared_made:
                    try:
                        self._shared = self._shared_factory()
                    finally:
                        self._shared_made = True
        return self._shared

    def _outage(self, error: Exception) -> None:
        held = self._outages.note()
        if held is not None:
            more = f" ({held} more failures since the last such line)" if held else ""
            log.warning("admission: Redis failed (%s); counting this worker's connections only until it answers%s", error, more)

    def _refuse(self, environ: Mapping[str, Any], ip: str, reason: str, retry_after: int, why: str) -> HTTPErrorApp:
        metrics.refused(environ, why)
        held = self._refusals.note(ip)
        if held is not None and log.isEnabledFor(logging.INFO):
            more = f"; {held} more refused from {ip} since the last such line" if held else ""
            log.info("ws.refuse path=%s peer=%s status=429 reason=%r%s", environ.get("PATH_INFO"), peer_of(environ), reason, more)
        return HTTPErrorApp(429, reason, (("Retry-After", str(retry_after)),))


def _shared_from_hub() -> SharedCounts | None:
    """Counts in the hub's Redis when ``hub_url`` names one server; None (this worker only) otherwise."""
    options = current_options()
    if not options.hub_url:
        return None
    from ..hub.ip_counts import SharedCounts
    from ..hub.process import current_hub
    from ..hub.redis_backend import RedisBackend

    hub = current_hub()
    alive = hub.alive_key()
    if alive is None or not isinstance(hub.backend, RedisBackend):
        log.warning("admission: max_connections_per_ip is counted per worker: the hub's Redis is a cluster")
        return None
    return SharedCounts(hub.backend.client, hub.worker)


_admission = PerProcess(lambda: Admission(_shared_from_hub))


def current_admission() -> Admission:
    """This process's counts (made on first use; across workers through the hub's Redis when ``hub_url`` is set)."""
    return _admission.get()


def admit(environ: Mapping[str, Any], options: WebSocketOptions, scope: str = SERVER_SCOPE) -> HTTPErrorApp | Release | None:
    """:meth:`Admission.admit` of this process's counts, free when ``options`` set no per-IP limit."""
    if options.max_connections_per_ip is None and options.max_connection_rate_per_ip is None:
        return None
    return current_admission().admit(environ, options, scope)
