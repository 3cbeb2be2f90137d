"""This process's hub, made from the options in force, and publishing from any Python process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .. import metrics
from ..connection.keepalive import gevent_patched, spawn_background
from ..options import WebSocketOptions, current_options
from ..protocol.assembler import Message
from .backends import CHANNEL_PREFIX, Backend, MemoryBackend, encode
from .history import History
from .hub import Hub

__all__ = ["current_hub", "make_hub", "publish"]

_hub: Hub | None = None
_hub_lock = threading.Lock()


def make_hub(
    options: WebSocketOptions,
    spawn: Callable[..., Any],
    sleep: Callable[[float], Any] = time.sleep,
    defer: Callable[[Callable[[], None]], object] | None = None,
) -> Hub:
    """A hub for these options: Redis when ``hub_url`` is set (a cluster if it is one), in memory otherwise."""
    backend: Backend
    if options.hub_url:
        from .redis_backend import redis_backend  # the redis package is needed only then

        backend = redis_backend(options.hub_url, options.hub_cluster, spawn, sleep)
    else:
        backend = MemoryBackend()
    history = History(options.hub_history_size, options.hub_history_ttl) if options.hub_history_size else None
    return Hub(backend, spawn, defer, history)


def current_hub() -> Hub:
    """This process's hub, made on first use from the options in force (its counters join ``/stats``)."""
    global _hub
    if _hub is None:
        with _hub_lock:
            if _hub is None:
                defer = None
                if gevent_patched():
                    import gevent

                    defer = gevent.spawn
                hub = make_hub(current_options(), spawn_background, defer=defer)
                metrics.add_source(hub.counters.as_dict)
                _hub = hub
    return _hub


def publish(
    url: str,
    group: str,
    message: Message | bytearray | memoryview,
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
    history = History(history_size, history_ttl) if history_size else None
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
