"""Hub backends: how a published message reaches the hubs of the workers with members (in memory; Redis in
:mod:`wsgi_ws.hub.redis_backend`), and the payload a message travels in."""

from __future__ import annotations

from typing import Protocol

from ..protocol.assembler import Message

__all__ = ["CHANNEL_PREFIX", "READY", "Backend", "MemoryBackend", "Receiver", "Waitable", "decode", "encode"]

#: Redis channels are named CHANNEL_PREFIX + group.
CHANNEL_PREFIX = "wsgi_ws:"
_TEXT, _BINARY, _TEXT_FROM, _BINARY_FROM = b"t", b"b", b"T", b"B"
#: Bytes of the sender's membership token in a payload that skips its sender.
TOKEN_SIZE = 8


def encode(message: Message | bytearray | memoryview, sender: bytes = b"") -> bytes:
    """A message as one Redis payload: a type byte, the sender's token if it is to be skipped, the UTF-8 text or bytes."""
    text = isinstance(message, str)
    body = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if sender:
        assert len(sender) == TOKEN_SIZE
        return (_TEXT_FROM if text else _BINARY_FROM) + sender + body
    return (_TEXT if text else _BINARY) + body


def decode(payload: bytes) -> tuple[Message, bytes]:
    """The message and the sender's token (``b""`` if none) from a payload made by :func:`encode`.

    Raises ``ValueError`` for anything else, ``UnicodeDecodeError`` for text that is not UTF-8.
    """
    kind = payload[:1]
    if kind == _TEXT:
        return payload[1:].decode("utf-8"), b""
    if kind == _BINARY:
        return payload[1:], b""
    if kind in (_TEXT_FROM, _BINARY_FROM) and len(payload) > TOKEN_SIZE:
        sender, body = payload[1 : 1 + TOKEN_SIZE], payload[1 + TOKEN_SIZE :]
        return (body.decode("utf-8") if kind == _TEXT_FROM else body), sender
    raise ValueError("not a wsgi-ws hub payload")


class _Ready:
    """A subscription that is already in place (the in-memory backend's)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Already set."""
        return True


#: What :meth:`Backend.subscribe` returns when nothing needs waiting for.
READY = _Ready()


class Waitable(Protocol):
    """Set once a subscription is in place (``threading.Event`` is one)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` seconds; True once set."""
        ...


class Receiver(Protocol):
    """What a backend delivers to: the worker's hub."""

    def deliver(self, group: str, message: Message, sender: bytes = b"") -> None:
        """A message published to ``group`` (``sender``: the token of the member to skip, or ``b""``)."""

    def reaches(self, group: str, sender: bytes = b"") -> bool:
        """True when this worker has a member of ``group`` other than ``sender``."""
        ...


class Backend(Protocol):
    """Carries published messages to the hubs that have members in the group."""

    def start(self, receiver: Receiver) -> None:
        """Begin delivering the messages of the groups subscribed to ``receiver``."""

    def subscribe(self, group: str) -> Waitable:
        """This worker has a member of ``group`` now: receive its messages (set once they arrive)."""
        ...

    def unsubscribe(self, group: str) -> None:
        """This worker's last member of ``group`` left: stop receiving its messages."""

    def publish(self, group: str, message: Message | bytearray | memoryview, sender: bytes = b"") -> int:
        """Publish; how many workers with members of the group received it (0: nobody, or it could not be sent)."""
        ...

    def workers(self, group: str) -> int:
        """How many workers, on every machine the backend reaches, have members of ``group`` now."""
        ...


class MemoryBackend:
    """Delivers within this process only: the default, for one worker."""

    def __init__(self) -> None:
        self._receiver: Receiver | None = None

    def start(self, receiver: Receiver) -> None:
        """Remember where to deliver."""
        self._receiver = receiver

    def subscribe(self, group: str) -> Waitable:
        """Nothing to do: every message published in this process is seen."""
        return READY

    def unsubscribe(self, group: str) -> None:
        """Nothing to do."""

    def publish(self, group: str, message: Message | bytearray | memoryview, sender: bytes = b"") -> int:
        """Deliver at once to this process's members: 1 if that reached anyone, else 0."""
        receiver = self._receiver
        if receiver is None or not receiver.reaches(group, sender):
            return 0
        receiver.deliver(group, message if isinstance(message, str) else bytes(message), sender)
        return 1

    def workers(self, group: str) -> int:
        """1 when this process has members of ``group``, else 0."""
        return int(self._receiver is not None and self._receiver.reaches(group))
