"""Hub backends: how a published message reaches the hubs of every worker (in memory, or Redis pub/sub)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol.assembler import Message

__all__ = ["CHANNEL_PREFIX", "Backend", "MemoryBackend", "RedisBackend", "decode", "encode"]

log = logging.getLogger("wsgi_ws")

#: Redis channels are named CHANNEL_PREFIX + group.
CHANNEL_PREFIX = "wsgi_ws:"
_TEXT, _BINARY = b"t", b"b"


def encode(message: Message | bytearray | memoryview) -> bytes:
    """A message as one Redis payload: a type byte, then the UTF-8 text or the bytes."""
    if isinstance(message, str):
        return _TEXT + message.encode("utf-8")
    return _BINARY + bytes(message)


def decode(payload: bytes) -> Message:
    """The message from a Redis payload made by :func:`encode`."""
    kind, body = payload[:1], payload[1:]
    if kind == _TEXT:
        return body.decode("utf-8")
    if kind == _BINARY:
        return body
    raise ValueError("not a wsgi-ws hub payload")


class Backend(Protocol):
    """Carries published messages to the hubs that have members in the group."""

    def start(self, deliver: Callable[[str, Message], None]) -> None:
        """Begin delivering: ``deliver(group, message)`` is called for every message published to any group."""

    def publish(self, group: str, message: Message | bytearray | memoryview) -> bool:
        """Publish; False if the message could not be sent (it is then lost)."""
        ...


class MemoryBackend:
    """Delivers within this process only: the default, for one worker."""

    def __init__(self) -> None:
        self._deliver: Callable[[str, Message], None] | None = None

    def start(self, deliver: Callable[[str, Message], None]) -> None:
        """Remember where to deliver."""
        self._deliver = deliver

    def publish(self, group: str, message: Message | bytearray | memoryview) -> bool:
        """Deliver at once to this process's members."""
        if self._deliver is not None:
            self._deliver(group, message if isinstance(message, str) else bytes(message))
        return True


class RedisBackend:
    """Redis pub/sub: one pattern subscription per worker, reconnecting with back-off when Redis goes away."""

    def __init__(self, url: str, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep) -> None:
        import redis  # only needed when a Redis URL is configured

        self.url = url
        self._redis = redis
        self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_keepalive=True)
        self._spawn = spawn
        self._sleep = sleep
        self._subscribed = threading.Event()
        self.stopping = False

    def start(self, deliver: Callable[[str, Message], None]) -> None:
        """Start the listener; returns once it is subscribed (or after 10 s, with a warning)."""
        self._spawn(self._listen, deliver)
        if not self._subscribed.wait(10):
            log.warning("hub: not subscribed to Redis at %s yet; messages are lost until it is", self.url)

    def publish(self, group: str, message: Message | bytearray | memoryview) -> bool:
        """PUBLISH to the group's channel; False (and a warning) when Redis cannot be reached."""
        try:
            self._client.publish(CHANNEL_PREFIX + group, encode(message))
        except self._redis.RedisError as exc:
            log.warning("hub: could not publish to %r on Redis at %s (%s); the message is lost", group, self.url, exc)
            return False
        return True

    def _listen(self, deliver: Callable[[str, Message], None]) -> None:
        delay = 0.1
        lost_at: float | None = None
        while not self.stopping:
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                for item in pubsub.listen():
                    if item["type"] == "psubscribe":
                        self._subscribed.set()
                        delay = 0.1
                        if lost_at is not None:
                            log.warning(
                                "hub: reconnected to Redis at %s after %.1f s; messages published meanwhile were not delivered "
                                "to this worker (pub/sub delivers at most once)",
                                self.url,
                                time.monotonic() - lost_at,
                            )
                            lost_at = None
                        continue
                    if item["type"] != "pmessage":
                        continue
                    channel = item["channel"].decode("utf-8", "replace")
                    try:
                        message = decode(item["data"])
                    except (ValueError, UnicodeDecodeError):
                        log.warning("hub: ignoring a malformed message on %s", channel)
                        continue
                    deliver(channel[len(CHANNEL_PREFIX) :], message)
            except self._redis.RedisError as exc:
                self._subscribed.clear()
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning(
                        "hub: lost Redis at %s (%s); messages published until it is back are lost for this worker; reconnecting",
                        self.url,
                        exc,
                    )
            finally:
                with contextlib.suppress(self._redis.RedisError):
                    pubsub.close()
            self._sleep(delay)
            delay = min(delay * 2, 5.0)
