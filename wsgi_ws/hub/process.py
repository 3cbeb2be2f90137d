"""This process's hub, made from the options in force, and publishing from any Python process."""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable
from typing import Any

from .. import metrics
from ..connection.keepalive import gevent_patched, spawn_background
from ..options import WebSocketOptions, current_options
from ..per_process import PerProcess
from ..protocol.assembler import Message
from .backends import CHANNEL_PREFIX, Backend, CloseRequest, MemoryBackend, encode
from .history import History
from .hub import USER_GROUP, Hub
from .presence import Presence, RedisPresence, worker_id

log = logging.getLogger("wsgi_ws")

__all__ = ["current_hub", "disconnect_user", "make_hub", "publish", "send_to_user"]


def make_hub(
    options: WebSocketOptions,
    spawn: Callable[..., Any],
    sleep: Callable[[float], Any] = time.sleep,
    defer: Callable[[Callable[[], None]], object] | None = None,
) -> Hub:
    """A hub for these options: Redis when ``hub_url`` is set (a cluster if it is one), in memory otherwise.

    Presence is kept in Redis too, on one server (with a cluster, in this worker's memory only, with a warning).
    """
    backend: Backend
    presence: Presence | None = None
    worker = worker_id()
    if options.hub_url:
        from .redis_backend import ClusterBackend, redis_backend  # the redis package is needed only then

        backend = redis_backend(options.hub_url, options.hub_cluster, spawn, sleep)
        if isinstance(backend, ClusterBackend):
            log.warning("hub: presence spans one Redis server, not a cluster: presence() lists this worker's connections only")
        else:
            presence = RedisPresence(backend.client, worker, spawn, sleep, options.hub_presence_heartbeat)
    else:
        backend = MemoryBackend()
    history = History(options.hub_history_size, options.hub_history_ttl) if options.hub_history_size else None
    return Hub(backend, spawn, defer, history, presence, worker)


def _make_process_hub() -> Hub:
    defer = None
    if gevent_patched():
        import gevent

        defer = gevent.spawn
    hub = make_hub(current_options(), spawn_background, defer=defer)
    metrics.add_source(hub.counters.as_dict)
    metrics.add_histogram("hub_delivery_lag_seconds", hub.counters.lag)
    atexit.register(hub.stop_presence)  # a clean exit takes this worker's presence entries at once
    return hub


_hub = PerProcess(_make_process_hub)


def current_hub() -> Hub:
    """This process's hub, made on first use from the options in force (its counters join ``/stats``)."""
    return _hub.get()


def publish(
    url: str,
    group: str,
    message: Message | bytearray | memoryview | CloseRequest,
    *,
    cluster: bool | None = None,
    history_size: int = 0,
    history_ttl: float = 300.0,
) -> int:
    """Publish to ``group`` through Redis at ``url`` from any Python process (a cron job, a service); raises on failure.

    Returns how many workers with members of the group received it. ``cluster`` as the ``hub_cluster`` setting.
    For a recoverable group pass the history the workers keep for it (``hub_history_size`` / ``hub_history_ttl``):
    the message then gets its position and stays for connections that resume.
    """
    import redis

    from .backends import with_position
    from .redis_backend import is_cluster
    from .redis_streams import Streams

    channel, payload = CHANNEL_PREFIX + group, encode(message)
    history = History(history_size, history_ttl) if history_size and not isinstance(message, CloseRequest) else None
    client: redis.Redis | redis.RedisCluster
    send: Callable[..., Any]
    if cluster or (cluster is None and is_cluster(url)):
        client = redis.RedisCluster.from_url(url, socket_connect_timeout=5)
        send = client.spublish
    else:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        send = client.publish
    try:
        if history is None:
            return int(send(channel, payload))
        streams = Streams(client, cluster=isinstance(client, redis.RedisCluster))
        reached, position = streams.append(group, payload, history)
        return reached if streams.publishes else int(send(channel, with_position(position, payload)))
    finally:
        client.close()


def send_to_user(url: str, user: str, message: Message | bytearray | memoryview, *, cluster: bool | None = None) -> int:
    """Send ``message`` to every connection of ``user`` (see :meth:`Hub.identify`) on every worker, from any process;
    how many workers had some. Raises on failure."""
    return publish(url, USER_GROUP + user, message, cluster=cluster)


def disconnect_user(url: str, user: str, code: int = 1008, reason: str = "", *, cluster: bool | None = None) -> int:
    """Close every connection of ``user`` on every worker with ``code`` and ``reason``, from any process (revoking a
    user's access); how many workers had some. Raises on failure."""
    return publish(url, USER_GROUP + user, CloseRequest(code, reason), cluster=cluster)
