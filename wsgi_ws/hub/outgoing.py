"""A published message on its way to a worker's members: framed once, compressed once per set of parameters."""

from __future__ import annotations

from ..protocol.assembler import Message
from ..protocol.frames import DeflateParams, deflate_frame, server_frame

__all__ = ["OWN_COMPRESSION", "FrameKind", "Outgoing"]

#: How a member's connection wants its frames: None uncompressed, :data:`DeflateParams` compressed with a fresh
#: context (the same bytes for every connection of those parameters), or :data:`OWN_COMPRESSION` (permessage-deflate
#: keeping its context between messages: only that connection can compress for itself).
FrameKind = DeflateParams | str | None
OWN_COMPRESSION = "own"


class Outgoing:
    """One published message: its group, its payload, who sent it, and its wire frames, each built at most once."""

    __slots__ = ("_deflated", "frame", "group", "message", "payload", "sender", "text")

    def __init__(self, group: str, message: Message, sender: bytes = b"") -> None:
        self.group = group
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
