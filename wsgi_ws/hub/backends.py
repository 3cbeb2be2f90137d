"""Hub backends: how a published message reaches the hubs of the workers with members (in memory; Redis in
:mod:`wsgi_ws.hub.redis_backend`), and the payload a message travels in."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..protocol.assembler import Message
from .history import History, HistoryRead, MemoryHistory, Position

__all__ = [
    "CHANNEL_PREFIX",
    "READY",
    "Backend",
    "CloseRequest",
    "MemoryBackend",
    "Published",
    "Receiver",
    "Waitable",
    "decode",
    "encode",
    "split_position",
    "with_position",
]

#: Redis channels are named CHANNEL_PREFIX + group.
CHANNEL_PREFIX = "wsgi_ws:"
_TEXT, _BINARY, _TEXT_FROM, _BINARY_FROM, _CLOSE, _AT = b"t", b"b", b"T", b"B", b"C", b"@"
#: Bytes of the sender's membership token in a payload that skips its sender.
TOKEN_SIZE = 8


class CloseRequest(NamedTuple):
    """Published instead of a message: every member of the group closes with ``code`` and ``reason``."""

    code: int
    reason: str


#: What a payload carries: a message, or a request to close the members.
Published = Message | CloseRequest


def encode(message: Message | bytearray | memoryview | CloseRequest, sender: bytes = b"") -> bytes:
    """A message as one Redis payload: a type byte, the sender's token if it is to be skipped, the UTF-8 text or bytes."""
    if isinstance(message, CloseRequest):
        return _CLOSE + message.code.to_bytes(2, "big") + message.reason.encode("utf-8")
    text = isinstance(message, str)
    body = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if sender:
        assert len(sender) == TOKEN_SIZE
        return (_TEXT_FROM if text else _BINARY_FROM) + sender + body
    return (_TEXT if text else _BINARY) + body


def decode(payload: bytes) -> tuple[Published, bytes]:
    """The message and the sender's token (``b""`` if none) from a payload made by :func:`encode`.

    Raises ``ValueError`` for anything else, ``UnicodeDecodeError`` for text that is not UTF-8.
    """
    kind = payload[:1]
    if kind == _CLOSE and len(payload) >= 3:
        return CloseRequest(int.from_bytes(payload[1:3], "big"), payload[3:].decode("utf-8")), b""
    if kind == _TEXT:
        return payload[1:].decode("utf-8"), b""
    if kind == _BINARY:
        return payload[1:], b""
    if kind in (_TEXT_FROM, _BINARY_FROM) and len(payload) > TOKEN_SIZE:
        sender, body = payload[1 : 1 + TOKEN_SIZE], payload[1 + TOKEN_SIZE :]
        return (body.decode("utf-8") if kind == _TEXT_FROM else body), sender
    raise ValueError("not a wsgi-ws hub payload")


def with_position(position: Position, payload: bytes) -> bytes:
    """``payload`` marked with its position in a recoverable group (what the Redis publish script sends)."""
    return b"@%s %s" % (position.token().encode("ascii"), payload)


def split_position(payload: bytes) -> tuple[Position | None, bytes]:
    """The position a payload is marked with (None if it is not) and the payload without it; ``ValueError`` if bad."""
    if payload[:1] != _AT:
        return None, payload
    mark, sep, rest = payload[1:].partition(b" ")
    if not sep:
        raise ValueError("not a wsgi-ws hub payload")
    return Position.parse(mark.decode("ascii")), rest


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

    def deliver(self, group: str, message: Published, sender: bytes = b"", position: Position | None = None) -> None:
        """A message published to ``group`` (``sender``: the token of the member to skip, or ``b""``; ``position``:
        where it stands in a recoverable group)."""

    def resumed(self, group: str) -> None:
        """The backend receives ``group``'s messages again after losing them for a while (Redis went away)."""

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

    def publish(
        self, group: str, message: Message | bytearray | memoryview | CloseRequest, sender: bytes = b"", history: History | None = None
    ) -> int:
        """Publish (kept in the group's history, with a position, when ``history`` is given); how many workers with
        members of the group received it (0: nobody, or it could not be sent)."""
        ...

    def read_history(self, group: str, after: int, history: History) -> HistoryRead:
        """The group's history after offset ``after``, at most ``history.size`` messages; raises if it cannot be read.

        A group without history gets one (an epoch, nothing in it, kept ``history.ttl``), so that a client that
        joined before anything was published has a position to resume from."""
        ...

    def workers(self, group: str) -> int:
        """How many workers, on every machine the backend reaches, have members of ``group`` now."""
        ...


class MemoryBackend:
    """Delivers within this process only: the default, for one worker."""

    def __init__(self) -> None:
        self._receiver: Receiver | None = None
        self._history = MemoryHistory()

    def start(self, receiver: Receiver) -> None:
        """Remember where to deliver."""
        self._receiver = receiver

    def subscribe(self, group: str) -> Waitable:
        """Nothing to do: every message published in this process is seen."""
        return READY

    def unsubscribe(self, group: str) -> None:
        """Nothing to do."""

    def publish(
        self, group: str, message: Message | bytearray | memoryview | CloseRequest, sender: bytes = b"", history: History | None = None
    ) -> int:
        """Deliver at once to this process's members (kept in its history first): 1 if that reached anyone, else 0."""
        published: Published = message if isinstance(message, (str, CloseRequest)) else bytes(message)
        position = None
        if history is not None and not isinstance(published, CloseRequest):
            position = self._history.append(group, published, sender, history)
        receiver = self._receiver
        if receiver is None or not receiver.reaches(group, sender):
            return 0
        receiver.deliver(group, published, sender, position)
        return 1

    def read_history(self, group: str, after: int, history: History) -> HistoryRead:
        """This process's history of ``group``."""
        return self._history.read(group, after, history)

    def workers(self, group: str) -> int:
        """1 when this process has members of ``group``, else 0."""
        return int(self._receiver is not None and self._receiver.reaches(group))
