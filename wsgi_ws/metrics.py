"""Counters of one process, by route: connections, refusals, closes, messages and bytes each way, and histograms.

They are kept cheaply: every connection counts its own messages and bytes, and adds them to its route's totals
when it ends; :func:`snapshot` adds the live connections' counts to those totals. A message's size goes into its
route's :class:`Buckets` (one bisect and one addition). Read them with :func:`snapshot` (this process's totals),
:func:`routes` (the same, by route), or across every worker of a server with :mod:`wsgi_ws.prometheus`, which
exports them; the sample app serves ``/stats`` and ``/metrics``. The log lines (``ws.accept``, ``ws.refuse``,
``ws.close``, ``ws.timeout``) say the same per event, through Python's logging.

A route is the Flask rule a connection's handler was registered with (``/rooms/<name>``), else the request path;
past :data:`MAX_ROUTES` different ones, the rest are counted as ``other``, so a path with ids in it cannot grow
the counters without bound.
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = [
    "DURATION_BOUNDS",
    "LAG_BOUNDS",
    "MAX_ROUTES",
    "ROUTE_KEY",
    "SIZE_BOUNDS",
    "SIZE_INDEX",
    "Buckets",
    "Counted",
    "RouteCounts",
    "SizeBuckets",
    "add_histogram",
    "add_source",
    "before_first_count",
    "closed",
    "count_message_sizes",
    "histograms",
    "live",
    "opened",
    "refused",
    "route_of",
    "routes",
    "snapshot",
    "sources",
]

#: The environ key holding the route a request matched (set by ``wsgi_ws.flask_ext``): the routes' label.
ROUTE_KEY = "wsgi_ws.route"
#: Different routes counted apart in one process; the ones after are counted together as ``other``.
MAX_ROUTES = 100
#: The upper bounds of the message size buckets, in bytes (characters for text), the last bucket unbounded.
SIZE_BOUNDS = (64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0)
#: The upper bounds of the connection duration buckets, in seconds.
DURATION_BOUNDS = (0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
#: The upper bounds of the hub's delivery lag buckets, in seconds.
LAG_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counted(Protocol):
    """What a connection counts for itself (``WebSocket`` does): messages and bytes each way, and why it closed."""

    environ: Mapping[str, object]
    message_sizes: tuple[Buckets, Buckets] | None

    @property
    def messages_received(self) -> int: ...
    @property
    def messages_sent(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def close_code(self) -> int | None: ...
    @property
    def duration(self) -> float: ...


class Buckets:
    """A histogram kept as a count per bucket: ``counts[i]`` values were at most ``bounds[i]`` (and more than the
    bound before); the last count is of values above every bound. ``total`` is the sum of the values."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def copy(self) -> Buckets:
        """A copy to read while the original goes on counting."""
        other = Buckets(self.bounds)
        other.counts[:], other.total = self.counts, self.total
        return other

    def add(self, value: float, times: int = 1) -> None:
        """Count ``value`` (``times`` times)."""
        self.counts[bisect_left(self.bounds, value)] += times
        self.total += value * times


class SizeBuckets(Buckets):
    """:class:`Buckets` of message sizes, with :data:`SIZE_BOUNDS` (powers of two): a size's bucket is read from a
    table by its bit length, about half the time of a bisect (this runs for every message)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(SIZE_BOUNDS)

    def add(self, value: float, times: int = 1) -> None:
        """Count a size of ``value`` bytes, a whole number (``times`` times). ``WebSocket`` does this inline."""
        size = int(value)
        self.counts[SIZE_INDEX[(size - 1).bit_length()]] += times
        self.total += size * times

    def copy(self) -> Buckets:
        """A copy to read while the original goes on counting."""
        other = SizeBuckets()
        other.counts[:], other.total = self.counts, self.total
        return other


#: The bucket of every size whose ``(size - 1).bit_length()`` is the index: all sizes of one bit length share a
#: bucket, since every bound is a power of two (and 0 falls in the first). The connection's hot path reads it inline.
assert all(bound == 2 ** (int(bound).bit_length() - 1) for bound in SIZE_BOUNDS)
SIZE_INDEX = [bisect_left(SIZE_BOUNDS, 2**length) for length in range(65)]


class RouteCounts:
    """One route's counts in this process, since it started (connections still open are not in the message and byte
    totals until they close: :func:`routes` adds them)."""

    __slots__ = (
        "accepted",
        "bytes_in",
        "bytes_out",
        "closed",
        "closed_by_code",
        "durations",
        "messages_in",
        "messages_out",
        "refused_by_reason",
        "sizes_in",
        "sizes_out",
    )

    def __init__(self) -> None:
        self.accepted = self.closed = 0
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        #: Refused upgrade requests by reason: ``origin``, ``handshake``, ``capacity``, ``shutdown``, ``ip_rate``,
        #: ``ip_connections``, ``application`` (the handler answered with HTTP instead of accepting).
        self.refused_by_reason: dict[str, int] = {}
        #: Closed connections by close code (``1006`` when it broke).
        self.closed_by_code: dict[int, int] = {}
        self.durations = Buckets(DURATION_BOUNDS)
        self.sizes_in: Buckets = SizeBuckets()
        self.sizes_out: Buckets = SizeBuckets()

    def copy(self) -> RouteCounts:
        """A copy to read while the connections go on counting."""
        other = RouteCounts()
        for name in ("accepted", "closed", "messages_in", "messages_out", "bytes_in", "bytes_out"):
            setattr(other, name, getattr(self, name))
        other.refused_by_reason = dict(self.refused_by_reason)
        other.closed_by_code = dict(self.closed_by_code)
        other.durations, other.sizes_in, other.sizes_out = self.durations.copy(), self.sizes_in.copy(), self.sizes_out.copy()
        return other


_count_sizes = False  # count_message_sizes() was called
_before_first: list[Callable[[], None]] = []
_counting = False  # this process has counted a connection (False again in a forked child)

_lock = threading.Lock()
_live: weakref.WeakSet[Counted] = weakref.WeakSet()
_sources: list[Callable[[], Mapping[str, int]]] = []
_routes: dict[str, RouteCounts] = {}
_histograms: dict[str, Buckets] = {}


def route_of(environ: Mapping[str, object]) -> str:
    """The route label of a request: the rule it matched, else its path."""
    return str(environ.get(ROUTE_KEY) or environ.get("PATH_INFO") or "/")


def _counts_for(route: str) -> RouteCounts:
    """The counts of ``route`` (the lock is held)."""
    counts = _routes.get(route)
    if counts is None:
        if len(_routes) >= MAX_ROUTES and route != "other":
            return _counts_for("other")
        counts = _routes[route] = RouteCounts()
    return counts


def before_first_count(callback: Callable[[], None]) -> None:
    """Call ``callback`` when this process first counts an accepted or refused connection, and again in each process
    forked after that, before its own first count: :mod:`wsgi_ws.prometheus` starts its exporter so, whichever server
    runs the app and whichever part refuses. ``callback`` must not raise, and may itself count."""
    _before_first.append(callback)


def _first_count() -> None:
    global _counting
    _counting = True
    for callback in _before_first:
        callback()


def _forget_in_child() -> None:
    global _counting
    _counting = False


os.register_at_fork(after_in_child=_forget_in_child)


def opened(ws: Counted) -> None:
    """A connection was accepted: it counts as open, and its messages' sizes go to its route's buckets."""
    if not _counting:
        _first_count()
    with _lock:
        counts = _counts_for(route_of(ws.environ))
        _live.add(ws)
        counts.accepted += 1
    if _count_sizes:
        ws.message_sizes = (counts.sizes_in, counts.sizes_out)


def count_message_sizes() -> None:
    """Count the sizes of the messages of connections accepted from now on (the exporter of
    :mod:`wsgi_ws.prometheus` asks for it). Off until then: it is the one count that costs every message something,
    about a tenth of the library's own work per message (``bench/hot_path.py`` under callgrind)."""
    global _count_sizes
    _count_sizes = True


def refused(environ: Mapping[str, object], reason: str) -> None:
    """An upgrade request was refused, for ``reason`` (a word: see :attr:`RouteCounts.refused_by_reason`)."""
    if not _counting:
        _first_count()
    with _lock:
        by_reason = _counts_for(route_of(environ)).refused_by_reason
        by_reason[reason] = by_reason.get(reason, 0) + 1


def closed(ws: Counted) -> None:
    """A connection ended: fold its counts into its route's totals (once, however often it is called)."""
    with _lock:
        if ws not in _live:
            return
        _live.discard(ws)
        counts = _counts_for(route_of(ws.environ))
        counts.closed += 1
        code = ws.close_code or 1006
        counts.closed_by_code[code] = counts.closed_by_code.get(code, 0) + 1
        counts.durations.add(ws.duration)
        counts.messages_in += ws.messages_received
        counts.messages_out += ws.messages_sent
        counts.bytes_in += ws.bytes_received
        counts.bytes_out += ws.bytes_sent


def add_source(source: Callable[[], Mapping[str, int]]) -> None:
    """Have :func:`snapshot` include the counters ``source()`` returns (the hub's, which counts for itself)."""
    with _lock:
        _sources.append(source)


def add_histogram(name: str, buckets: Buckets) -> None:
    """Have :func:`histograms` include ``buckets`` as ``name`` (the hub's delivery lag, which it counts itself)."""
    with _lock:
        _histograms[name] = buckets


def histograms() -> dict[str, Buckets]:
    """The added histograms, copied (``hub_delivery_lag_seconds``)."""
    with _lock:
        added = dict(_histograms)
    return {name: buckets.copy() for name, buckets in added.items()}


def sources() -> dict[str, int]:
    """What the added sources count now (the hub's ``hub_*`` counters)."""
    with _lock:
        added = list(_sources)
    result: dict[str, int] = {}
    for source in added:
        result.update(source())
    return result


def live() -> list[Counted]:
    """The connections open now."""
    with _lock:
        return list(_live)


def routes() -> dict[str, RouteCounts]:
    """Each route's counts since the process started, the open connections' messages and bytes included."""
    with _lock:
        result = {route: counts.copy() for route, counts in _routes.items()}
        open_now = list(_live)
    for ws in open_now:
        counts = result.get(route_of(ws.environ)) or result.get("other")
        if counts is not None:
            counts.messages_in += ws.messages_received
            counts.messages_out += ws.messages_sent
            counts.bytes_in += ws.bytes_received
            counts.bytes_out += ws.bytes_sent
    return result


def snapshot() -> dict[str, int]:
    """This process's totals: ``open`` connections now; ``accepted``, ``refused`` (``limited``: by a per-IP limit),
    ``closed``, ``messages_in``/``_out`` and ``bytes_in``/``_out`` since it started (live connections included), and
    the sources' counters (``hub_*``)."""
    result = dict.fromkeys(("accepted", "refused", "limited", "closed", "messages_in", "messages_out", "bytes_in", "bytes_out"), 0)
    for counts in routes().values():
        result["accepted"] += counts.accepted
        result["closed"] += counts.closed
        for reason, count in counts.refused_by_reason.items():
            result["refused"] += count
            if reason.startswith("ip_"):
                result["limited"] += count
        result["messages_in"] += counts.messages_in
        result["messages_out"] += counts.messages_out
        result["bytes_in"] += counts.bytes_in
        result["bytes_out"] += counts.bytes_out
    result["open"] = len(live())
    result.update(sources())
    return result
