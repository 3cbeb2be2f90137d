"""The Redis hub backend: per-group pub/sub channels, subscribed only while this worker has members; Redis Cluster.

A worker subscribes to ``wsgi_ws:<group>`` when its first member of the group joins and unsubscribes when its last
leaves; the changes of one turn of the event loop go out as one ``SUBSCRIBE`` and one ``UNSUBSCRIBE`` on the
worker's one pub/sub connection. So a worker receives, and spends CPU on, only the groups it has members of.

With a Redis Cluster (found out from the server, or ``hub_cluster=true``) the channels are sharded (``SSUBSCRIBE``
/ ``SPUBLISH``, Redis 7): a group's traffic stays on the shard that owns its channel's slot, and a worker holds one
pub/sub connection per shard it needs.

When Redis goes away the reader reconnects with back-off (0.1 s doubling to 5 s) and subscribes to every group it
needs again; the log says when the connection dropped and when it came back: pub/sub delivers at most once, so what
was published meanwhile is lost for this worker's members, except in recoverable groups (a history size set): the
hub reads what they missed from the groups' streams (:mod:`wsgi_ws.hub.redis_streams`) once they are back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.client import PubSub

from ..protocol.assembler import Message
from .backends import CHANNEL_PREFIX, CloseRequest, Receiver, Waitable, decode, encode, split_position, with_position
from .history import History, HistoryRead
from .redis_streams import Streams

__all__ = ["ClusterBackend", "RedisBackend", "Subscriptions", "is_cluster", "pooled_client", "redis_backend"]

log = logging.getLogger("wsgi_ws")

#: Seconds one wait of the reader lasts (it then waits again): only bounds how long a wait is.
READ_WAIT = 60.0
_CONNECT: dict[str, Any] = {"socket_connect_timeout": 5, "socket_keepalive": True}
#: Connections a worker's hub opens to one Redis server for publishing and reading histories, at most; beyond them a
#: call waits (at most POOL_WAIT seconds) for one to be free instead of failing (redis-py's default pool raises
#: "Too many connections" past 100: a burst of joins or publishes would lose messages).
POOL_SIZE, POOL_WAIT = 64, 10.0


def pooled_client(url: str) -> redis.Redis:
    """A client for ``url`` whose calls wait for a free connection when :data:`POOL_SIZE` are busy."""
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=POOL_WAIT, **_CONNECT)
    return redis.Redis(connection_pool=pool)


class Subscriptions:
    """One pub/sub connection to one Redis server: the channels this worker needs, kept subscribed, and their reader.

    ``sharded`` uses ``SSUBSCRIBE`` (a cluster shard). ``on_message(channel, payload)`` runs in the reader.
    """

    def __init__(
        self,
        client: redis.Redis,
        label: str,
        on_message: Callable[[str, bytes], None],
        spawn: Callable[..., Any],
        sleep: Callable[[float], Any] = time.sleep,
        sharded: bool = False,
        on_resumed: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._on_resumed = on_resumed
        self._confirmed: set[str] = set()  # channels confirmed since they were wanted: a new confirm is a resumption
        self.label = label
        self._on_message = on_message
        self._spawn = spawn
        self._sleep = sleep
        self._sharded = sharded
        self._lock = threading.Lock()
        self._wanted: dict[str, threading.Event] = {}  # channel -> set once the server confirmed it
        self._sent: set[str] = set()  # what the current connection was asked to hold
        self._pubsub: PubSub | None = None
        self._needed = threading.Event()  # set while any channel is wanted
        self._sync_scheduled = False
        self._started = False
        self.stopping = False

    def want(self, channel: str) -> Waitable:
        """Hold ``channel`` (from the next turn of the event loop on); the event is set once the server confirmed it."""
        with self._lock:
            ready = self._wanted.get(channel)
            if ready is not None:
                return ready
            ready = self._wanted[channel] = threading.Event()
            self._needed.set()
            self._schedule()
        return ready

    def drop(self, channel: str) -> None:
        """Stop holding ``channel``."""
        with self._lock:
            if self._wanted.pop(channel, None) is not None:
                self._confirmed.discard(channel)
                if not self._wanted:
                    self._needed.clear()
                self._schedule()

    def _schedule(self) -> None:
        """One sync per turn of the event loop, so the changes of many joins go out together (the lock is held)."""
        if not self._started:
            self._started = True
            self._spawn(self._read)
        if not self._sync_scheduled:
            self._sync_scheduled = True
            self._spawn(self._sync)

    def _sync(self) -> None:
        """Send the connection what changed: one SUBSCRIBE for the new channels, one UNSUBSCRIBE for the old."""
        with self._lock:
            self._sync_scheduled = False
            pubsub = self._pubsub
            if pubsub is None:
                return  # the reader subscribes to everything wanted once it is connected
            wanted = set(self._wanted)
            add, remove = wanted - self._sent, self._sent - wanted
            self._sent = wanted
        try:
            if add:
                self._subscribe(pubsub, add)
            if remove:
                (pubsub.sunsubscribe if self._sharded else pubsub.unsubscribe)(*sorted(remove))  # type: ignore[no-untyped-call]
        except redis.RedisError:
            pass  # the reader sees the connection break, reconnects and subscribes to everything again

    def _subscribe(self, pubsub: PubSub, channels: set[str]) -> None:
        (pubsub.ssubscribe if self._sharded else pubsub.subscribe)(*sorted(channels))

    def _read(self) -> None:
        """The reader: connect, subscribe to what is wanted, deliver; reconnect with back-off when Redis goes away."""
        delay = 0.1
        lost_at: float | None = None
        confirms = ("ssubscribe",) if self._sharded else ("subscribe",)
        messages = ("smessage",) if self._sharded else ("message",)
        while not self.stopping:
            self._needed.wait()
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call]
            try:
                with self._lock:
                    channels = set(self._wanted)
                    self._sent = channels
                if not channels:
                    continue
                self._subscribe(pubsub, channels)
                with self._lock:
                    self._pubsub = pubsub
                while not self.stopping:
                    item = pubsub.get_message(timeout=READ_WAIT)  # (timeout=None breaks once unsubscribed from everything)
                    if item is None:
                        continue
                    kind = item["type"]
                    if kind in messages:
                        self._on_message(item["channel"].decode("utf-8", "replace"), item["data"])
                    elif kind in confirms:
                        self._confirm(item["channel"].decode("utf-8", "replace"))
                        delay = 0.1
                        if lost_at is not None:
                            log.warning(
                                "hub: reconnected to Redis at %s after %.1f s; recoverable groups catch up from their "
                                "history, the others lost what was published meanwhile (pub/sub delivers at most once)",
                                self.label,
                                time.monotonic() - lost_at,
                            )
                            lost_at = None
            except Exception as exc:
                with self._lock:
                    self._pubsub = None
                    for ready in self._wanted.values():
                        ready.clear()
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning(
                        "hub: lost Redis at %s (%s); reconnecting (until then, this worker's members get only what recoverable "
                        "groups' histories keep)",
                        self.label,
                        exc,
                    )
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            self._sleep(delay)
            delay = min(delay * 2, 5.0)

    def _confirm(self, channel: str) -> None:
        """The server holds ``channel`` for us: wake the joins waiting for it, or tell the hub it resumed."""
        ready = self._wanted.get(channel)
        if ready is None:
            return
        ready.set()
        if channel not in self._confirmed:
            self._confirmed.add(channel)
        elif self._on_resumed is not None:
            self._on_resumed(channel)


class _Publisher:
    """Decoding what arrives and publishing, the same for one server and for a cluster."""

    _streams: Streams

    def __init__(self, label: str) -> None:
        self.label = label
        self._receiver: Receiver | None = None

    def start(self, receiver: Receiver) -> None:
        """Deliver to ``receiver`` from now on."""
        self._receiver = receiver

    def _arrived(self, channel: str, payload: bytes) -> None:
        receiver = self._receiver
        if receiver is None or not channel.startswith(CHANNEL_PREFIX):
            return
        try:
            position, payload = split_position(payload)
            message, sender = decode(payload)
        except (ValueError, UnicodeDecodeError):
            log.warning("hub: ignoring a malformed message on %s", channel)
            return
        receiver.deliver(channel[len(CHANNEL_PREFIX) :], message, sender, position)

    def _resumed(self, channel: str) -> None:
        receiver = self._receiver
        if receiver is not None and channel.startswith(CHANNEL_PREFIX):
            receiver.resumed(channel[len(CHANNEL_PREFIX) :])

    def _send(
        self,
        send: Callable[[str, bytes], Any],
        group: str,
        message: Message | bytearray | memoryview | CloseRequest,
        sender: bytes,
        history: History | None,
    ) -> int:
        try:
            payload = encode(message, sender)
            if history is None or isinstance(message, CloseRequest):
                return int(send(CHANNEL_PREFIX + group, payload))
            reached, position = self._streams.append(group, payload, history)
            if self._streams.publishes:
                return reached
            return int(send(CHANNEL_PREFIX + group, with_position(position, payload)))
        except redis.RedisError as exc:
            log.warning("hub: could not publish to %r on Redis at %s (%s); the message is lost", group, self.label, exc)
            return 0

    def read_history(self, group: str, after: int, history: History) -> HistoryRead:
        """The group's history in Redis after offset ``after``; raises ``redis.RedisError``."""
        return self._streams.read(group, after, history)


class RedisBackend(_Publisher):
    """One Redis server (or a replica set behind one URL): per-group channels on one pub/sub connection."""

    def __init__(self, url: str, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep) -> None:
        super().__init__(url)
        self.url = url
        #: This worker's client for commands (publishing, histories; presence shares it): one pool per worker.
        self.client = pooled_client(url)
        self._streams = Streams(self.client)
        self.subscriptions = Subscriptions(self.client, url, self._arrived, spawn, sleep, on_resumed=self._resumed)

    def subscribe(self, group: str) -> Waitable:
        """Receive ``group``'s messages."""
        return self.subscriptions.want(CHANNEL_PREFIX + group)

    def unsubscribe(self, group: str) -> None:
        """Stop receiving ``group``'s messages."""
        self.subscriptions.drop(CHANNEL_PREFIX + group)

    def publish(
        self, group: str, message: Message | bytearray | memoryview | CloseRequest, sender: bytes = b"", history: History | None = None
    ) -> int:
        """PUBLISH (through the history script when ``history`` is given): the number of workers subscribed to the
        group; 0 (and a warning) when Redis cannot be reached."""
        return self._send(self.client.publish, group, message, sender, history)

    def workers(self, group: str) -> int:
        """How many workers, on every machine, have members of ``group`` now (``PUBSUB NUMSUB``)."""
        counts = self.client.pubsub_numsub(CHANNEL_PREFIX + group)
        return int(counts[0][1]) if counts else 0


class ClusterBackend(_Publisher):
    """A Redis Cluster: sharded channels, one pub/sub connection per shard that owns a channel this worker needs."""

    def __init__(self, url: str, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep) -> None:
        super().__init__(url)
        self.url = url
        self._cluster = redis.RedisCluster.from_url(url, **_CONNECT)
        self._streams = Streams(self._cluster, cluster=True)
        self._spawn = spawn
        self._sleep = sleep
        self._shards: dict[str, Subscriptions] = {}
        self._shard_of: dict[str, Subscriptions] = {}
        self._lock = threading.Lock()

    def _shard(self, channel: str) -> Subscriptions:
        node = self._cluster.get_node_from_key(channel)  # type: ignore[no-untyped-call]
        with self._lock:
            shard = self._shards.get(node.name)
            if shard is None:
                client = redis.Redis(host=node.host, port=node.port, **_CONNECT)
                label = f"{self.url} (shard {node.name})"
                shard = self._shards[node.name] = Subscriptions(
                    client, label, self._arrived, self._spawn, self._sleep, sharded=True, on_resumed=self._resumed
                )
            return shard

    def subscribe(self, group: str) -> Waitable:
        """SSUBSCRIBE on the shard that owns the group's channel."""
        channel = CHANNEL_PREFIX + group
        shard = self._shard_of[channel] = self._shard(channel)
        return shard.want(channel)

    def unsubscribe(self, group: str) -> None:
        """SUNSUBSCRIBE."""
        channel = CHANNEL_PREFIX + group
        shard = self._shard_of.pop(channel, None)
        if shard is not None:
            shard.drop(channel)

    def publish(
        self, group: str, message: Message | bytearray | memoryview | CloseRequest, sender: bytes = b"", history: History | None = None
    ) -> int:
        """SPUBLISH (after the history script when ``history`` is given): the number of workers subscribed to the
        group on its shard; 0 (and a warning) on failure."""
        return self._send(self._cluster.spublish, group, message, sender, history)

    def workers(self, group: str) -> int:
        """How many workers have members of ``group`` now (``PUBSUB SHARDNUMSUB`` on its shard)."""
        counts = self._cluster.pubsub_shardnumsub(CHANNEL_PREFIX + group)  # routed to the channel's shard
        return int(counts[0][1]) if counts else 0


def is_cluster(url: str) -> bool:
    """Whether the Redis at ``url`` is a Redis Cluster node (``INFO cluster``); False, with a warning, if unreachable."""
    client = redis.Redis.from_url(url, **_CONNECT)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.RedisError as exc:
        log.warning("hub: cannot ask Redis at %s whether it is a cluster (%s); assuming it is not (set hub_cluster)", url, exc)
        return False
    finally:
        client.close()


def redis_backend(
    url: str, cluster: bool | None, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep
) -> RedisBackend | ClusterBackend:
    """The backend for ``url``: a cluster when ``cluster`` is True, or None and the server says it is one."""
    if cluster is None:
        cluster = is_cluster(url)
    return ClusterBackend(url, spawn, sleep) if cluster else RedisBackend(url, spawn, sleep)
