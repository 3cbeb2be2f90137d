"""Message assembly, I/O free: data frames in, whole messages (or bounded parts of them) out.

The :class:`Session` feeds every data frame it parses to its :class:`Assembler`; the connection layer takes what is
ready with :meth:`Assembler.pop_message` or, once a handler streams, :meth:`Assembler.pop_part`. Text is UTF-8
decoded fragment by fragment, so invalid UTF-8 is refused as soon as it arrives (RFC 6455 §8.1): the feeding methods
raise ``UnicodeDecodeError`` and the session fails the connection with 1007.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from websockets.frames import Opcode

__all__ = ["Assembler", "Message", "PartialMessage"]

#: A whole message: ``str`` for text, ``bytes`` for binary.
Message = str | bytes

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_utf8_decoder: Callable[[], codecs.IncrementalDecoder] = codecs.getincrementaldecoder("utf-8")
# Until a handler streams, parts go nowhere: a shared, always-empty deque (a deque costs about 600 bytes, and most
# connections never stream).
_NOT_STREAMING: deque[tuple[Message, bool]] = deque(maxlen=0)


class PartialMessage(NamedTuple):
    """A part of a message from ``receive_partial()``: ``str`` for text, ``bytes`` for binary."""

    data: Message
    end_of_message: bool


class Assembler(deque[Message]):
    """The received messages of one connection, whole or (once streaming) in parts, until the handler takes them.

    It is the queue of whole messages itself (a ``deque`` subclass), so that taking the next message on the hot path
    is one C call (:meth:`take`) and a connection has one object fewer; use its named methods, not the deque's.
    """

    __slots__ = ("_decoder", "_fragments", "_parts", "_pending", "_text_parts", "streaming")

    def __init__(self) -> None:
        super().__init__()
        self._parts: deque[tuple[Message, bool]] = _NOT_STREAMING
        self._pending: tuple[Message, bool] | None = None  # what is left of a part larger than the caller's limit
        self._fragments: list[bytes] = []
        self._text_parts: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        #: True once partial reads are on: data frames become parts, not whole messages.
        self.streaming = False

    # Feeding (the Session).

    @property
    def in_message(self) -> bool:
        """True while a fragmented message is under way (its first frame arrived, its last not yet)."""
        return self._decoder is not None or bool(self._fragments)

    def sink(self) -> Callable[[Message], object]:
        """Where whole messages parsed elsewhere (the fast path) go; valid only between messages, not streaming."""
        return self.append

    def start_streaming(self) -> None:
        """From now on data frames arrive as parts; call only between messages (not :attr:`in_message`)."""
        self._parts = deque()
        self.streaming = True

    def add_frame(self, opcode: Opcode, data: bytes | bytearray | memoryview, fin: bool) -> None:
        """Take one data frame (text, binary or continuation, already validated by the parser)."""
        if self.streaming:
            self._add_part(opcode, data, fin)
        elif opcode is _TEXT:
            if fin:
                self.append(bytes(data).decode("utf-8"))  # bytes(b) is b itself: no copy
            else:
                self._decoder = _utf8_decoder()
                self._text_parts = [self._decoder.decode(data, False)]
        elif opcode is _BINARY:
            if fin:
                self.append(bytes(data))
            else:
                self._decoder = None
                self._fragments = [bytes(data)]
        elif self._decoder is not None:  # a continuation of text
            self._text_parts.append(self._decoder.decode(data, fin))
            if fin:
                self.append("".join(self._text_parts))
                self._text_parts = []
                self._decoder = None
        else:  # a continuation of binary
            self._fragments.append(bytes(data))
            if fin:
                self.append(b"".join(self._fragments))
                self._fragments = []

    def drop_unfinished(self) -> None:
        """Forget a fragmented message that will never end (a close frame came between its fragments, §5.4)."""
        self._fragments = []
        self._text_parts = []
        self._decoder = None

    def _add_part(self, opcode: Opcode, data: bytes | bytearray | memoryview, fin: bool) -> None:
        if opcode is _TEXT:
            self._decoder = _utf8_decoder()
        elif opcode is _BINARY:
            self._decoder = None
        if self._decoder is not None:
            part: Message = self._decoder.decode(data, fin)
            if fin:
                self._decoder = None
        else:
            part = bytes(data)
        self._parts.append((part, fin))

    # Taking (the connection).

    #: How many whole messages wait to be taken (0: none); the truth of the assembler itself says the same.
    waiting = deque.__len__
    #: The oldest whole message; ``IndexError`` when none waits (ask :meth:`waiting` first). A C call.
    take = deque.popleft

    def has_unread(self) -> bool:
        """True while received messages or parts wait for the handler (the rest of a split part not counted)."""
        return bool(self or self._parts)

    def peek(self) -> tuple[Message, ...]:
        """The whole messages waiting, oldest first, without taking them (for inspection and tests)."""
        return tuple(self)

    def peek_parts(self) -> tuple[tuple[Message, bool], ...]:
        """The parts waiting once streaming, ``(data, end_of_message)``, without taking them."""
        return tuple(self._parts)

    def unread_size(self) -> int:
        """Bytes (characters for text) of the messages and parts waiting for the handler."""
        return sum(len(message) for message in self) + sum(len(part) for part, _ in self._parts)

    def pop_message(self) -> Message | None:
        """The oldest whole message, or None when there is none (a message may be empty, never None)."""
        return self.popleft() if self else None

    def pop_part(self, limit: int) -> PartialMessage | None:
        """The next part of at most ``limit`` bytes (UTF-8 bytes for text, never cut in a character), or None if none.

        Whole messages that completed before streaming began come first, as single parts of their own.
        """
        if self._pending is None:
            if self:
                self._pending = (self.popleft(), True)
            elif self._parts:
                self._pending = _coalesce(self._parts, limit)
            else:
                return None
        data, end = self._pending
        head, rest = _split_at(data, limit)
        if rest:
            self._pending = (rest, end)
            return PartialMessage(head, False)
        self._pending = None
        return PartialMessage(head, end)

    def discard(self) -> None:
        """Drop everything unread (the connection is closing and nobody will read it)."""
        self.clear()
        self._parts.clear()
        self._pending = None


def _coalesce(parts: deque[tuple[Message, bool]], limit: int) -> tuple[Message, bool]:
    """Take the next part, joined with the parts of the same message already received, up to about ``limit``."""
    data, end = parts.popleft()
    if end or not parts or len(data) >= limit:
        return data, end
    pieces = [data]
    size = len(data)
    while parts and not end and size < limit:
        data, end = parts.popleft()
        pieces.append(data)
        size += len(data)
    joined: Message = "".join(pieces) if isinstance(pieces[0], str) else b"".join(pieces)  # type: ignore[arg-type]
    return joined, end


def _split_at(data: Message, limit: int) -> tuple[Message, Message]:
    """Split ``data`` so the head is at most ``limit`` bytes (UTF-8 bytes for text, never inside a character)."""
    if isinstance(data, bytes):
        return data[:limit], data[limit:]
    if len(data) * 4 <= limit:
        return data, ""
    encoded = data.encode("utf-8")
    if len(encoded) <= limit:
        return data, ""
    cut = limit
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:
        cut -= 1
    head = encoded[:cut].decode("utf-8")
    return head, data[len(head) :]
