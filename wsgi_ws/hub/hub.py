"""Broadcast hub: named groups of connections, one message to all members, in one worker or across many.

::

    from wsgi_ws.hub import current_hub

    @sockets.route("/chat")
    def chat(ws):
        hub = current_hub()
        hub.join(ws, "lobby")            # left again automatically when the connection ends
        for message in ws:
            hub.publish("lobby", message)

Backends: in memory (the default: zero set-up, members of the same worker process only) and Redis pub/sub (set
``hub_url``, for example ``WS_HUB_URL=redis://127.0.0.1:6379/0``), which reaches members in every worker on every
machine, and lets any Python process publish with :func:`publish` without being a web server.

Delivery is at most once and in order per publisher. Redis pub/sub keeps nothing: what is published while a worker
is disconnected from Redis is lost for that worker's members (the log says so when the connection drops and comes
back). Every member has a bounded send queue (``hub_queue_limit`` messages) drained by a short-lived greenlet; a
client that falls further behind is closed with 1013 ("try again later") so that it never holds the others back
nor grows memory without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..connection.keepalive import spawn_background
from ..connection.websocket import WebSocket
from ..exceptions import ConnectionClosed
from ..options import WebSocketOptions, current_options
from ..protocol.assembler import Message
from ..protocol.session import CloseCode
from .backends import CHANNEL_PREFIX, Backend, MemoryBackend, RedisBackend, encode

__all__ = ["Hub", "current_hub", "make_hub", "publish"]

log = logging.getLogger("wsgi_ws")


class _Member:
    """One connection's membership and its bounded send queue."""

    __slots__ = ("draining", "groups", "queue", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.groups: set[str] = set()
        self.queue: deque[Message] = deque()
        self.draining = False


class Hub:
    """Groups of connections in this process, fed by a backend."""

    def __init__(
        self, backend: Backend, queue_limit: int, spawn: Callable[..., Any], pause: Callable[[], Any] = lambda: time.sleep(0)
    ) -> None:
        self.backend = backend
        self.queue_limit = queue_limit
        self._spawn = spawn
        self._pause = pause
        self._groups: dict[str, set[_Member]] = {}
        self._members: dict[WebSocket, _Member] = {}
        self._started = False
        self._lock = threading.Lock()

    def join(self, ws: WebSocket, group: str) -> None:
        """Add ``ws`` to ``group`` (accepting it if need be); it leaves every group when the connection ends."""
        if not self._started:
            with self._lock:
                if not self._started:
                    self.backend.start(self.deliver)
                    self._started = True
        member = self._members.get(ws)
        if member is None:
            member = self._members[ws] = _Member(ws)
            ws.on_finish(lambda: self.leave_all(ws))
        member.groups.add(group)
        self._groups.setdefault(group, set()).add(member)

    def leave(self, ws: WebSocket, group: str) -> None:
        """Remove ``ws`` from ``group``."""
        member = self._members.get(ws)
        if member is None:
            return
        member.groups.discard(group)
        members = self._groups.get(group)
        if members is not None:
            members.discard(member)
            if not members:
                del self._groups[group]

    def leave_all(self, ws: WebSocket) -> None:
        """Remove ``ws`` from every group."""
        member = self._members.pop(ws, None)
        if member is None:
            return
        for group in list(member.groups):
            members = self._groups.get(group)
            if members is not None:
                members.discard(member)
                if not members:
                    del self._groups[group]
        member.queue.clear()

    def members(self, group: str) -> int:
        """How many connections of this process are in ``group``."""
        return len(self._groups.get(group, ()))

    def publish(self, group: str, message: Message | bytearray | memoryview) -> bool:
        """Send ``message`` to every member of ``group``, in every worker the backend reaches; False if it was lost."""
        return self.backend.publish(group, message)

    def deliver(self, group: str, message: Message) -> None:
        """Queue a published message for this process's members of ``group`` (called by the backend)."""
        for member in list(self._groups.get(group, ())):
            if len(member.queue) >= self.queue_limit:
                self._pause()  # a burst from one publisher: let the drains have a turn first
                if len(member.queue) >= self.queue_limit:  # its drain is stuck on a full socket: it fell behind
                    self._overflow(member)
                    continue
            member.queue.append(message)
            if not member.draining:
                member.draining = True
                self._spawn(self._drain, member)

    def _drain(self, member: _Member) -> None:
        try:
            while member.queue:
                member.ws.send(member.queue.popleft())
        except ConnectionClosed:
            self.leave_all(member.ws)
        finally:
            member.draining = False

    def _overflow(self, member: _Member) -> None:
        log.warning(
            "hub: WebSocket %s from %s fell %d messages behind; closing it with 1013 so the others keep their pace",
            member.ws.path,
            member.ws.peer,
            len(member.queue),
        )
        self.leave_all(member.ws)
        member.ws.abort(CloseCode.TRY_AGAIN_LATER, "too slow: fell behind the broadcast")


_hub: Hub | None = None
_hub_lock = threading.Lock()


def make_hub(options: WebSocketOptions, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep) -> Hub:
    """A hub for these options: Redis when ``hub_url`` is set, in memory otherwise."""
    backend: Backend = RedisBackend(options.hub_url, spawn, sleep) if options.hub_url else MemoryBackend()
    return Hub(backend, options.hub_queue_limit, spawn)


def current_hub() -> Hub:
    """This process's hub, made on first use from the options in force."""
    global _hub
    if _hub is None:
        with _hub_lock:
            if _hub is None:
                _hub = make_hub(current_options(), spawn_background)
    return _hub


def publish(url: str, group: str, message: Message | bytearray | memoryview) -> None:
    """Publish to ``group`` through Redis at ``url`` from any Python process (a cron job, a service); raises on failure."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.publish(CHANNEL_PREFIX + group, encode(message))
    finally:
        client.close()
