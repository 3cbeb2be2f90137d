"""A published message on its way to a worker's members: framed once, compressed once per set of parameters,
rendered once per :class:`Format` (what a join asked its messages to be sent as)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol.assembler import Message
from ..protocol.frames import DeflateParams, deflate_frame, server_frame
from .history import Delivery, Position, Recovery

__all__ = ["OWN_COMPRESSION", "Format", "FrameKind", "Notice", "Outgoing", "shape"]

#: How a member's connection wants its frames: None uncompressed, :data:`DeflateParams` compressed with a fresh
#: context (the same bytes for every connection of those parameters), or :data:`OWN_COMPRESSION` (permessage-deflate
#: keeping its context between messages: only that connection can compress for itself).
FrameKind = DeflateParams | str | None
OWN_COMPRESSION = "own"


@dataclass(frozen=True)
class Format:
    """How a member of a group wants its messages: ``render`` turns each into what is sent (None: as published), and
    ``announce`` turns a :class:`~wsgi_ws.hub.history.Recovery` into a message sent before them (None: nothing)."""

    render: Callable[[Delivery], Message] | None = None
    announce: Callable[[Recovery], Message | None] | None = None


class Outgoing:
    """One published message: its group, its payload, who sent it, and its wire frames, each built at most once."""

    __slots__ = ("_deflated", "_rendered", "frame", "group", "message", "payload", "position", "received_at", "sender", "text")

    def __init__(self, group: str, message: Message, sender: bytes = b"", position: Position | None = None) -> None:
        self.group = group
        #: When this worker got it (``time.monotonic()``): the hub's delivery lag counts from here.
        self.received_at = time.monotonic()
        #: Where it stands in its group (recoverable groups only).
        self.position = position
        self._rendered: dict[Format, Outgoing] | None = None
        #: The message as published (``str`` text, ``bytes`` binary); a connection that compresses for itself sends it.
        self.message = message
        self.text = isinstance(message, str)
        self.payload: bytes = message.encode("utf-8") if isinstance(message, str) else message
        #: The membership token of the connection that published it, when it asked to be skipped.
        self.sender = sender
        #: The uncompressed frame, shared by every connection without compression.
        self.frame = server_frame(self.payload, self.text)
        self._deflated: dict[DeflateParams, bytes] | None = None

    def frame_for(self, kind: FrameKind) -> bytes:
        """The frame for connections of ``kind`` (not :data:`OWN_COMPRESSION`: those compress for themselves)."""
        if kind is None:
            return self.frame
        assert isinstance(kind, tuple), "a connection that compresses with its own context sends the message itself"
        deflated = self._deflated
        if deflated is None:
            deflated = self._deflated = {}
        frame = deflated.get(kind)
        if frame is None:
            frame = deflated[kind] = deflate_frame(self.payload, self.text, kind)
        return frame

    @property
    def size(self) -> int:
        """Bytes of payload, for the members' backlog bound."""
        return len(self.payload)

    def rendered(self, fmt: Format) -> Outgoing:
        """This message as members of ``fmt`` get it (rendered once per format)."""
        if fmt.render is None or self.position is None:
            return self
        cache = self._rendered
        if cache is None:
            cache = self._rendered = {}
        item = cache.get(fmt)
        if item is None:
            message = fmt.render(Delivery(self.group, self.message, self.position))
            item = cache[fmt] = Outgoing(self.group, message, self.sender, self.position)
            item.received_at = self.received_at
        return item


class Notice:
    """Tells the members of a recoverable group something about their stream (messages were lost: a new epoch)."""

    __slots__ = ("_rendered", "group", "position", "recovery", "sender")

    def __init__(self, group: str, recovery: Recovery) -> None:
        self.group = group
        self.recovery = recovery
        self.position = recovery.position
        self.sender = b""
        self._rendered: dict[Format, Outgoing | None] = {}

    def rendered(self, fmt: Format) -> Outgoing | None:
        """The notice as members of ``fmt`` get it; None when they asked for no announcements."""
        if fmt.announce is None:
            return None
        if fmt not in self._rendered:
            message = fmt.announce(self.recovery)
            self._rendered[fmt] = None if message is None else Outgoing(self.group, message)
        return self._rendered[fmt]


def shape(items: list[Outgoing | Notice], fmt: Format | None) -> list[Outgoing]:
    """``items`` as members of ``fmt`` get them: rendered, notices announced or left out."""
    if fmt is None:
        return [item for item in items if isinstance(item, Outgoing)]
    shaped = []
    for item in items:
        out = item.rendered(fmt)
        if out is not None:
            shaped.append(out)
    return shaped
