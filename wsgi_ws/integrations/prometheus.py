"""The process counters (:mod:`wsgi_ws.metrics`) as Prometheus metrics, summed over every worker of a server.

``prometheus_client`` runs in its multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` names a folder (the project's
``gunicorn.conf.py`` makes one per server and marks dead workers in gunicorn's ``child_exit`` hook, see
:func:`child_exit`): each worker writes its values into its own files there, and :func:`exposition` on any worker
reads them all. Without that variable the metrics are this process's (``flask run``, one process).

Counting stays in :mod:`wsgi_ws.metrics`, which costs a handler's messages nothing measurable; an exporter in each
process copies what changed into ``prometheus_client``'s values once a second (:data:`EXPORT_INTERVAL`), when the
process exits, and before it answers a scrape. So a scrape shows another worker's counts as they were at most a
second ago. The metrics, all labelled by ``route`` (the Flask rule, else the path), but for the hub's:

- ``wsgi_ws_connections_open``, ``wsgi_ws_connections_accepted_total``;
- ``wsgi_ws_connections_refused_total{reason}`` (``origin``, ``handshake``, ``capacity``, ``shutdown``,
  ``ip_rate``, ``ip_connections``, ``application``), ``wsgi_ws_connections_closed_total{code}``;
- ``wsgi_ws_messages_total{direction}`` and ``wsgi_ws_bytes_total{direction}`` (``in``, ``out``);
- ``wsgi_ws_connection_duration_seconds`` and ``wsgi_ws_message_size_bytes{direction}`` histograms;
- ``wsgi_ws_hub_messages_total{event}`` (``received``, ``delivered``, ``dropped``, ``closed_slow``, ``replayed``,
  ``filled``, ``lost``) and ``wsgi_ws_hub_delivery_lag_seconds``.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from typing import Any

from .. import metrics
from ..metrics import DURATION_BOUNDS, LAG_BOUNDS, SIZE_BOUNDS, Buckets, RouteCounts
from ..server_settings import InvalidServerSetting

__all__ = [
    "EXPORT_INTERVAL",
    "MULTIPROCESS_DIR",
    "child_exit",
    "ensure_exporting",
    "export_now",
    "exposition",
    "on_exit",
    "on_starting",
    "prepare_directory",
    "server_totals",
]

log = logging.getLogger("wsgi_ws")

#: Seconds between two exports of a process's counts.
EXPORT_INTERVAL = 1.0
#: The environment variable that puts ``prometheus_client`` in multiprocess mode (a folder shared by the workers).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_MADE_HERE = "_WSGI_WS_METRICS_DIR_MADE"  # the folder prepare_directory() made, removed at exit


class _Exporter:
    """This process's metrics in ``prometheus_client``, and what of the counts it has exported so far."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.open = Gauge("wsgi_ws_connections_open", "WebSocket connections open", ["route"], registry=r, multiprocess_mode="livesum")
        self.accepted = Counter("wsgi_ws_connections_accepted", "WebSocket connections accepted", ["route"], registry=r)
        self.refused = Counter("wsgi_ws_connections_refused", "WebSocket upgrade requests refused", ["route", "reason"], registry=r)
        self.closed = Counter("wsgi_ws_connections_closed", "WebSocket connections closed, by close code", ["route", "code"], registry=r)
        self.messages = Counter("wsgi_ws_messages", "WebSocket messages", ["route", "direction"], registry=r)
        self.bytes = Counter("wsgi_ws_bytes", "Bytes on WebSocket connections, frames included", ["route", "direction"], registry=r)
        self.durations = Histogram(
            "wsgi_ws_connection_duration_seconds", "Lifetimes of closed connections", ["route"], registry=r, buckets=DURATION_BOUNDS
        )
        self.sizes = Histogram(
            "wsgi_ws_message_size_bytes",
            "Sizes of whole messages (characters for text)",
            ["route", "direction"],
            registry=r,
            buckets=SIZE_BOUNDS,
        )
        self.hub = Counter("wsgi_ws_hub_messages", "What the hub did with published messages", ["event"], registry=r)
        self.lag = Histogram(
            "wsgi_ws_hub_delivery_lag_seconds",
            "From a worker's receipt of a published message to its socket write",
            registry=r,
            buckets=LAG_BOUNDS,
        )
        self._lock = threading.Lock()
        self._routes: dict[str, RouteCounts] = {}
        self._hub: dict[str, int] = {}
        self._lag = Buckets(LAG_BOUNDS)

    def export(self) -> None:
        """Add to the Prometheus values what was counted since the last export."""
        with self._lock:
            now = metrics.routes()
            for route, counts in now.items():
                before = self._routes.get(route) or RouteCounts()
                self._export_route(route, counts, before)
            self._routes = now
            hub = metrics.sources()
            for name, value in hub.items():
                if name.startswith("hub_"):  # each shown from the start, 0 included
                    _inc(self.hub.labels(name[len("hub_") :]), value - self._hub.get(name, 0))
            self._hub = hub
            lag = metrics.histograms().get("hub_delivery_lag_seconds")
            if lag is not None:
                _add_buckets(self.lag, lag, self._lag)
                self._lag = lag

    def _export_route(self, route: str, now: RouteCounts, before: RouteCounts) -> None:
        self.open.labels(route).set(now.accepted - now.closed)
        _inc(self.accepted.labels(route), now.accepted - before.accepted)
        for reason, count in now.refused_by_reason.items():
            _inc(self.refused.labels(route, reason), count - before.refused_by_reason.get(reason, 0))
        for code, count in now.closed_by_code.items():
            _inc(self.closed.labels(route, str(code)), count - before.closed_by_code.get(code, 0))
        _inc(self.messages.labels(route, "in"), now.messages_in - before.messages_in)
        _inc(self.messages.labels(route, "out"), now.messages_out - before.messages_out)
        _inc(self.bytes.labels(route, "in"), now.bytes_in - before.bytes_in)
        _inc(self.bytes.labels(route, "out"), now.bytes_out - before.bytes_out)
        _add_buckets(self.durations.labels(route), now.durations, before.durations)
        _add_buckets(self.sizes.labels(route, "in"), now.sizes_in, before.sizes_in)
        _add_buckets(self.sizes.labels(route, "out"), now.sizes_out, before.sizes_out)

    def run(self) -> None:
        """Export every :data:`EXPORT_INTERVAL` seconds, for the life of the process (a failure is logged once)."""
        failing = False
        while True:
            time.sleep(EXPORT_INTERVAL)
            try:
                self.export()
            except OSError as error:
                if not failing:
                    log.warning("Prometheus metrics: exporting failed (%s); retrying every %g s", error, EXPORT_INTERVAL)
                failing = True
            else:
                failing = False


def _inc(counter: Any, amount: float) -> None:
    if amount > 0:
        counter.inc(amount)


def _add_buckets(histogram: Any, now: Buckets, before: Buckets) -> None:
    """Add the counts ``now`` has over ``before`` to a ``prometheus_client`` histogram child.

    ``Histogram.observe`` takes one value at a time (about 10 µs each in multiprocess mode, too slow for every
    message), so this adds whole bucket counts to the child's values: its ``_buckets`` (one value per bucket, not
    cumulative, as ``observe`` keeps them) and ``_sum``. tests/test_prometheus.py checks the exposition this gives
    against ``observe``'s for the pinned version.
    """
    changed = False
    for index, (count, earlier) in enumerate(zip(now.counts, before.counts, strict=True)):
        if count > earlier:
            histogram._buckets[index].inc(count - earlier)
            changed = True
    if changed:
        histogram._sum.inc(now.total - before.total)


_state_lock = threading.Lock()
_exporter: _Exporter | None = None
_checked_pid = 0


def _forget_in_child() -> None:  # a forked worker makes its own exporter (and thread), into its own files
    global _exporter, _checked_pid, _state_lock
    _exporter, _checked_pid, _state_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def _start() -> _Exporter:
    global _exporter
    with _state_lock:
        if _exporter is None:
            exporter = _Exporter()
            metrics.count_message_sizes()
            threading.Thread(target=exporter.run, name="wsgi-ws-prometheus", daemon=True).start()
            atexit.register(exporter.export)
            _exporter = exporter
        return _exporter


def ensure_exporting() -> None:
    """Start this process's exporter if ``PROMETHEUS_MULTIPROC_DIR`` is set and ``prometheus_client`` is installed.

    Every worker must export, also those never scraped: our worker calls this when it starts serving, and
    :mod:`wsgi_ws.metrics` before a process first counts a connection, under any server."""
    global _checked_pid
    if _checked_pid == os.getpid():
        return
    _checked_pid = os.getpid()
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            return
        try:
            _start()
        except OSError as error:  # the folder is gone or not writable: serve on, without metrics
            log.warning("Prometheus metrics are off in this worker: %s=%s cannot be written (%s)", MULTIPROCESS_DIR, directory, error)


metrics.before_first_count(ensure_exporting)  # under any server: also a worker that only ever refuses


def export_now() -> None:
    """Export this process's counts now (a scrape does; so can a test before it reads the metrics files)."""
    _start().export()


def _collected() -> Iterable[Any]:
    """The metric families of the whole server (multiprocess mode), else of this process."""
    exporter = _start()
    exporter.export()
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return exporter.registry.collect()
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry.collect()


def exposition() -> tuple[bytes, str]:
    """The body and content type of a Prometheus scrape: every worker's metrics summed (this process's without
    ``PROMETHEUS_MULTIPROC_DIR``). Serve it at ``/metrics``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class _Families:
        def collect(self) -> Iterable[Any]:
            return _collected()

    return generate_latest(_Families()), CONTENT_TYPE_LATEST


def server_totals() -> dict[str, int]:
    """:func:`wsgi_ws.metrics.snapshot`'s counters summed over every worker of the server (what ``/stats`` serves);
    this process's snapshot when ``prometheus_client`` is not installed or no ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if not os.environ.get(MULTIPROCESS_DIR):
        return metrics.snapshot()
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return metrics.snapshot()
    totals = dict.fromkeys(("open", "accepted", "refused", "limited", "closed", "messages_in", "messages_out", "bytes_in", "bytes_out"), 0)
    for family in _collected():
        for sample in family.samples:
            key = _total_key(sample.name, sample.labels)
            if key is not None:
                totals[key] = totals.get(key, 0) + int(sample.value)
                if key == "refused" and sample.labels.get("reason", "").startswith("ip_"):
                    totals["limited"] += int(sample.value)
    return totals


_SIMPLE = {
    "wsgi_ws_connections_open": "open",
    "wsgi_ws_connections_accepted_total": "accepted",
    "wsgi_ws_connections_refused_total": "refused",
    "wsgi_ws_connections_closed_total": "closed",
}


def _total_key(name: str, labels: dict[str, str]) -> str | None:
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name in ("wsgi_ws_messages_total", "wsgi_ws_bytes_total"):
        return f"{name[len('wsgi_ws_') : -len('_total')]}_{labels['direction']}"
    if name == "wsgi_ws_hub_messages_total":
        return f"hub_{labels['event']}"
    return None


def prepare_directory() -> str | None:
    """For a gunicorn config file, before anything imports ``prometheus_client``: make ``PROMETHEUS_MULTIPROC_DIR``
    name a folder (a new temporary one unless it is set), so that the workers the server forks share it.

    Returns the folder, or None when ``prometheus_client`` is not installed (the metrics are then off, and ``/stats``
    is per worker); :class:`~wsgi_ws.server_settings.InvalidServerSetting`, naming the variable, when the folder it
    names cannot be made. A folder made here is removed when this process exits, however it exits (a start-up error, a
    busy port, ``--check-config`` included), unless a new master started by ``USR2`` goes on with it (see
    :func:`on_exit`). Pair it with the hooks :func:`on_starting`, :func:`child_exit` and :func:`on_exit`."""
    if importlib.util.find_spec("prometheus_client") is None:
        return None
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise InvalidServerSetting(f"invalid setting {MULTIPROCESS_DIR}: cannot make the folder ({error})") from None
    else:
        directory = os.environ[MULTIPROCESS_DIR] = os.environ[_MADE_HERE] = tempfile.mkdtemp(prefix="wsgi-ws-metrics-")
    if directory == os.environ.get(_MADE_HERE):  # made here, or by the master that re-executed this one
        atexit.register(_remove_at_exit, directory, os.getpid())
    return directory


_handed_over: set[str] = set()  # folders a new master (USR2) goes on with: not removed at this one's exit


def _remove_at_exit(directory: str, master: int) -> None:
    if os.getpid() == master and directory not in _handed_over:  # not in a forked worker, which inherits the hook
        shutil.rmtree(directory, ignore_errors=True)


def on_starting(server: Any) -> None:
    """gunicorn's ``on_starting`` hook: empty the folder of a previous run's files (a re-executed master keeps them:
    the old one's workers still count)."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory and "GUNICORN_PID" not in os.environ:
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)


def on_exit(server: Any) -> None:
    """gunicorn's ``on_exit`` hook: the folder :func:`prepare_directory` made stays for the new master when this one
    re-executed itself (``USR2``); else it is removed as this process exits."""
    directory = os.environ.get(_MADE_HERE)
    reexecuted = bool(getattr(server, "reexec_pid", 0))
    if directory and reexecuted:
        _handed_over.add(directory)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: a worker died, so its open connections no longer count (its totals stay)."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, directory)  # type: ignore[no-untyped-call]
