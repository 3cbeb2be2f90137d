"""Broadcast hub: named groups of connections, one message to all members, in one worker or across many.

::

    from wsgi_ws.hub import current_hub

    @sockets.route("/chat")
    def chat(ws):
        hub = current_hub()
        hub.join(ws, "lobby")                       # left again automatically when the connection ends
        for message in ws:
            hub.publish("lobby", message, exclude=ws)  # everyone else in the room

Backends: in memory (the default: zero set-up, members of the same worker process only) and Redis pub/sub (set
``hub_url``, for example ``WS_HUB_URL=redis://127.0.0.1:6379/0``), which reaches members in every worker on every
machine, and lets any Python process publish with :func:`publish` without being a web server. A worker subscribes to
a group's channel only while it has members of that group; with a Redis Cluster it uses sharded pub/sub.

Delivery is at most once and in order per publisher. Each published message is framed once per worker (compressed
once per set of permessage-deflate parameters, for connections that reset their context per message), and the
messages published since the last pass go to each member in one write (:mod:`wsgi_ws.hub.member`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import metrics
from ..connection.keepalive import gevent_patched, spawn_background
from ..connection.websocket import WebSocket
from ..options import WebSocketOptions, current_options
from ..protocol.assembler import Message
from .backends import CHANNEL_PREFIX, Backend, MemoryBackend, Waitable, encode
from .member import Counters, Member
from .outgoing import OWN_COMPRESSION, FrameKind, Outgoing

__all__ = ["Hub", "current_hub", "make_hub", "publish"]

#: Seconds :meth:`Hub.join` waits for the backend to confirm a new group's subscription.
SUBSCRIBE_WAIT = 5.0

log = logging.getLogger("wsgi_ws")


class Hub:
    """Groups of connections in this process, fed by a backend.

    ``spawn`` starts writers and closers in the background; ``defer`` runs the fan-out at the event loop's next
    turn, so that messages published meanwhile share its writes (None: each message fans out at once, in the
    publisher's thread).
    """

    def __init__(self, backend: Backend, spawn: Callable[..., Any], defer: Callable[[Callable[[], None]], object] | None = None) -> None:
        self.backend = backend
        self._spawn = spawn
        self._defer = defer
        self._groups: dict[str, dict[Member, None]] = {}
        self._members: dict[WebSocket, Member] = {}
        self._subscribed: dict[str, Waitable] = {}  # per group: set once the backend delivers its messages
        self._pending: list[Outgoing] = []
        self._scheduled = False
        self._started = False
        self._lock = threading.Lock()  # starting the backend; fan-out passes when there is no event loop
        #: What this worker's hub has done (``/stats`` shows them as ``hub_*``).
        self.counters = Counters()

    # Membership.

    def join(self, ws: WebSocket, group: str) -> None:
        """Add ``ws`` to ``group`` (accepting it if need be); it leaves every group when the connection ends.

        Returns once this worker receives the group's messages (with Redis: subscribed, or after 5 s with a warning).
        """
        if not self._started:
            with self._lock:
                if not self._started:
                    self.backend.start(self)
                    self._started = True
        if not ws.accepted:
            ws.accept()
        member = self._members.get(ws)
        if member is None:
            member = Member(ws, os.urandom(8), self.counters, self._spawn, self.leave_all, cooperative=self._defer is not None)
            self._members[ws] = member
            ws.on_finish(lambda: self._ended(ws))
        member.groups.add(group)
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = {}
            self._subscribed[group] = self.backend.subscribe(group)
        members[member] = None
        if not self._subscribed[group].wait(SUBSCRIBE_WAIT):
            log.warning("hub: not subscribed to group %r yet; its messages are lost for this worker until it is", group)

    def leave(self, ws: WebSocket, group: str) -> None:
        """Remove ``ws`` from ``group``."""
        member = self._members.get(ws)
        if member is not None and group in member.groups:
            member.groups.discard(group)
            self._forget(member, group)

    def leave_all(self, ws: WebSocket) -> None:
        """Remove ``ws`` from every group."""
        member = self._members.get(ws)
        if member is not None:
            for group in list(member.groups):
                self._forget(member, group)
            member.groups.clear()

    def _ended(self, ws: WebSocket) -> None:
        """The connection ended: it leaves every group, and what still waited for it is dropped.

        Its membership is kept until then, so a connection that leaves and joins again is watched once.
        """
        self.leave_all(ws)
        member = self._members.pop(ws, None)
        if member is not None:
            member.stop()

    def _forget(self, member: Member, group: str) -> None:
        members = self._groups.get(group)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._groups[group]
                del self._subscribed[group]
                self.backend.unsubscribe(group)

    def members(self, group: str) -> int:
        """How many connections of this worker are in ``group`` (other workers' are not counted)."""
        return len(self._groups.get(group, ()))

    def workers(self, group: str) -> int:
        """How many workers, on every machine, have members of ``group`` now (Redis; in memory: this one or none)."""
        return self.backend.workers(group)

    def groups(self) -> list[str]:
        """The groups this worker has members of (the only ones whose messages it receives)."""
        return list(self._groups)

    # Publishing.

    def publish(self, group: str, message: Message | bytearray | memoryview, *, exclude: WebSocket | None = None) -> int:
        """Send ``message`` to every member of ``group`` in every worker the backend reaches, except ``exclude``.

        Returns how many workers with members of the group received it (in memory: 1 or 0): 0 means that nobody is
        in the group right now, or (with a warning in the log) that Redis could not be reached; the message is then
        lost. Text stays text, bytes-like is sent as binary.
        """
        sender = b""
        if exclude is not None:
            member = self._members.get(exclude)
            if member is not None:
                sender = member.token
        return self.backend.publish(group, message, sender)

    def deliver(self, group: str, message: Message, sender: bytes = b"") -> None:
        """Hand a published message to this worker's members of ``group`` (called by the backend)."""
        self.counters.received += 1
        if group not in self._groups:
            return
        self._pending.append(Outgoing(group, message, sender))
        if self._defer is None:
            with self._lock:
                self._fan_out()
        elif not self._scheduled:
            self._scheduled = True
            self._defer(self._fan_out)

    def reaches(self, group: str, sender: bytes = b"") -> bool:
        """True when this worker has a member of ``group`` other than the one with token ``sender``."""
        members = self._groups.get(group)
        if not members:
            return False
        return not sender or len(members) > 1 or next(iter(members)).token != sender

    def _fan_out(self) -> None:
        """Offer everything published since the last pass to the members, in runs of one group, in order."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        start = 0
        while start < len(pending):
            group = pending[start].group
            end = start + 1
            while end < len(pending) and pending[end].group == group:
                end += 1
            self._offer_run(group, pending[start:end])
            start = end

    def _offer_run(self, group: str, run: list[Outgoing]) -> None:
        members = self._groups.get(group)
        if not members:
            return
        senders = {item.sender for item in run if item.sender}
        blobs: dict[FrameKind, bytes | None] = {}
        for member in list(members):
            kind = member.kind
            if senders and member.token in senders:
                items = [item for item in run if item.sender != member.token]
                if items:
                    member.offer(items, _join(items, kind))
                continue
            if kind in blobs:
                blob = blobs[kind]
            else:
                blob = blobs[kind] = _join(run, kind)
            member.offer(run, blob)


def _join(items: list[Outgoing], kind: FrameKind) -> bytes | None:
    """The frames of ``items`` for connections of ``kind``, as one write; None for connections that compress themselves."""
    if kind == OWN_COMPRESSION:
        return None
    if len(items) == 1:
        return items[0].frame_for(kind)
    return b"".join([item.frame_for(kind) for item in items])


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
    return Hub(backend, spawn, defer)


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


def publish(url: str, group: str, message: Message | bytearray | memoryview, *, cluster: bool | None = None) -> int:
    """Publish to ``group`` through Redis at ``url`` from any Python process (a cron job, a service); raises on failure.

    Returns how many workers with members of the group received it. ``cluster`` as the ``hub_cluster`` setting.
    """
    import redis

    from .redis_backend import is_cluster

    channel, payload = CHANNEL_PREFIX + group, encode(message)
    if cluster or (cluster is None and is_cluster(url)):
        cluster_client = redis.RedisCluster.from_url(url, socket_connect_timeout=5)
        try:
            return int(cluster_client.spublish(channel, payload))
        finally:
            cluster_client.close()
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        return int(client.publish(channel, payload))
    finally:
        client.close()
