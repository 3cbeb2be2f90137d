"""The RFC 6455 state of one accepted connection, I/O free: bytes in, whole messages out, and back.

Framing, unmasking (C-accelerated), control frames, close codes and size limits are the work of the
``websockets`` package's sans-I/O :class:`websockets.protocol.Protocol`; this module adds what a blocking
server needs on top: reassembly of fragmented messages into ``str`` or ``bytes``, UTF-8 validation of text
that fails fast on each fragment (RFC 6455 §8.1), and the close code the handler should see. The one exception is
a fast path for the common case, whole small messages: between messages, complete final text and binary frames
that break no rule are taken straight from the read (:meth:`Session._receive_simple`); anything else, from the
first frame that is not such a frame on, goes the careful way described above.

Call order: after :meth:`Session.receive_data`, :meth:`Session.receive_eof` or any ``send_*`` method, call
:meth:`Session.data_to_send` and write what it returns; an empty ``bytes`` at the end means "half-close TCP".
"""

from __future__ import annotations

import codecs
import logging
import struct
from collections import deque
from collections.abc import Callable

from websockets.exceptions import InvalidState
from websockets.exceptions import ProtocolError as _WebsocketsProtocolError
from websockets.extensions import Extension
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

from .exceptions import ConnectionClosed
from .splitter import FrameSplitter

__all__ = ["CloseCode", "Session"]

Message = str | bytes

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN
_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack
_NOT_STREAMING: deque[tuple[Message, bool]] = deque(maxlen=0)
_utf8_decoder: Callable[[], codecs.IncrementalDecoder] = codecs.getincrementaldecoder("utf-8")
_NO_LIMIT = (1 << 63) - 1  # a length above it has the most significant bit set: the careful path refuses it


class _ServerProtocol(Protocol):
    """websockets' protocol, with a close frame allowed in the middle of a fragmented message.

    RFC 6455 §5.4 lets control frames, close included, be injected between the fragments of a message;
    websockets 17 fails such a close with 1002 (Autobahn case 7.1.5). The unfinished message is dropped
    and the close is answered normally.
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _CLOSE:
            self.current_size = None
        super().recv_frame(frame)


class Session:
    """One accepted WebSocket connection, server side, without I/O."""

    __slots__ = (  # one per open connection: no per-instance dict
        "_decoder",
        "_failed",
        "_fragments",
        "_held",
        "_out",
        "_protocol",
        "_replies",
        "_splitter",
        "_stream_chunk_size",
        "_text_parts",
        "chunks",
        "messages",
        "pongs_received",
        "receive_done",
        "streaming",
    )

    def __init__(
        self,
        max_message_size: int | None,
        max_frame_size: int | None = None,
        extensions: list[Extension] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._protocol = _ServerProtocol(
            Side.SERVER,
            state=State.OPEN,
            max_size=(max_message_size, max_frame_size),
            logger=logger or logging.getLogger("wsgi_ws.protocol"),
        )
        self._protocol.extensions = list(extensions or [])
        # Every byte the fast path leaves goes through the splitter, so a frame still arriving reaches the parser in pieces: invalid
        # UTF-8 is refused as soon as it arrives (RFC 6455 §8.1), and partial reads can bound memory.
        frame_limit = max_frame_size if max_frame_size is not None else max_message_size
        self._splitter = FrameSplitter(None, allow_rsv1=bool(extensions), max_frame_size=frame_limit)
        #: Whole messages received and not yet taken by the handler.
        self.messages: deque[Message] = deque()
        #: True once nothing more will be received: a close frame arrived, the peer vanished, or we failed.
        self.receive_done = False
        #: Pong frames received so far (for inspection; keep-alive counts any received byte as an answer).
        self.pongs_received = 0
        self._fragments: list[bytes] = []
        self._text_parts: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        self._failed: CloseCode | int | None = None
        #: Parts of messages, ``(data, end_of_message)``, once streaming (partial reads) is on. Until then it is a
        #: shared, always-empty deque (``maxlen=0``): a deque costs about 600 bytes, and most connections never stream.
        self.chunks: deque[tuple[Message, bool]] = _NOT_STREAMING
        #: True once partial reads are on: data frames arrive in :attr:`chunks`, not :attr:`messages`.
        self.streaming = False
        self._stream_chunk_size = 0
        self._out: list[bytes] = []  # data frames built here, sent before the protocol's own output
        self._held: list[bytes] = []  # the closing frames, held while earlier messages are unread
        self._replies: list[bytes] = []  # frames sent in answer to those messages meanwhile

    # Receiving.

    def start_streaming(self, chunk_size: int) -> None:
        """Deliver data frames as parts of at most ``chunk_size`` bytes from now on (idempotent).

        The switch happens at the first moment no frame or message is half received; until then whole messages
        keep arriving in :attr:`messages`. While streaming, message and frame size limits no longer apply: memory
        is bounded by ``chunk_size`` instead.
        """
        self._stream_chunk_size = chunk_size
        self._enable_streaming_if_between_messages()

    def _enable_streaming_if_between_messages(self) -> None:
        protocol = self._protocol
        if self.streaming or self._decoder is not None or self._fragments:
            return
        self.chunks = deque()
        self._splitter.chunk_size = self._stream_chunk_size
        self._splitter.max_frame_size = None
        protocol.max_message_size = protocol.max_fragment_size = None
        self.streaming = True

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the network; completed messages are appended to :attr:`messages`."""
        protocol = self._protocol
        splitter = self._splitter
        if protocol.state is _OPEN and protocol.current_size is None and not self._stream_chunk_size and splitter.idle:
            limit = self._simple_frame_limit()
            if limit:
                position = self._receive_simple(data, limit)
                if position == len(data):
                    return
                data = data[position:]  # the rest (from the first frame the fast path left alone) goes the careful way
        data = splitter.feed(data)
        if data:
            protocol.receive_data(data)
            events = protocol.events_received()
            if events:
                for frame in events:
                    if self._failed is not None:
                        break
                    self._on_frame(frame)  # type: ignore[arg-type]
        if splitter.error is not None and protocol.state is _OPEN and self._failed is None:
            self.fail(CloseCode.PROTOCOL_ERROR, str(splitter.error))
            splitter.error = None
        if protocol.parser_exc is not None or protocol.state is not _OPEN:
            self.receive_done = True
            if self.messages or self.chunks:
                # The closing frame (ours for a violation, or the answer to the peer's close) waits until the handler
                # has read the messages that arrived before it, so it can still answer them (Autobahn 3.2, 4.1.3, ...).
                self._held += protocol.data_to_send()
        elif self._stream_chunk_size and not self.streaming:
            self._enable_streaming_if_between_messages()

    def _simple_frame_limit(self) -> int:
        """The largest payload :meth:`_receive_simple` may take now, or 0 when it must leave everything alone.

        Called only between messages (no fragmented message under way, nothing half fed to the parser, not
        streaming) on an open connection. The fast path also stays off with extensions (permessage-deflate decodes
        frames) and with websockets' debug logging (which logs every frame); both keep the careful path.
        """
        protocol = self._protocol
        if protocol.extensions or protocol.debug or protocol.reader.buffer:
            return 0
        limit = protocol.max_message_size  # Protocol.parse's max_size, between two messages
        fragment = protocol.max_fragment_size
        if limit is None or (fragment is not None and fragment < limit):
            limit = fragment
        return _NO_LIMIT if limit is None else limit + 1  # + 1: a limit of 0 must not turn the fast path off

    def _receive_simple(self, data: bytes, limit: int) -> int:
        """Take the complete simple frames at the start of ``data`` as messages; return where they end.

        The common case, a read holding whole small messages, parsed here with ``struct``-free indexing, websockets'
        C ``apply_mask`` and C UTF-8 decoding instead of websockets' generator-based parser, which profiles showed
        costing about half the server's time on small messages. A simple frame is one whose outcome is certain:
        FIN set, RSV bits clear, opcode text or binary, masked, a payload under ``limit`` that is all in ``data``,
        and for text, valid UTF-8. For such a frame websockets' parser and :meth:`_on_frame` would only append the
        same message: no state changes for a final data frame between messages (``Protocol.recv_frame``).
        The loop stops at the first frame that is anything else (a control frame, a fragment, a partial frame, a
        violation, invalid UTF-8) and the caller feeds the rest, from that frame on, to the splitter and the parser,
        which see exactly the bytes they would have seen after the frames before it: the outcome is the same.
        """
        append = self.messages.append
        end = len(data)
        position = 0
        while position + 6 <= end:  # 6 bytes: the smallest masked frame
            head1 = data[position]
            if head1 != 0x81 and head1 != 0x82:  # FIN, no RSV bit, text (1) or binary (2)
                break
            length = data[position + 1] ^ 0x80  # the MASK bit must be set: unmasked frames give 128-255
            if length < 126:
                start = position + 6
            elif length == 126:
                length = (data[position + 2] << 8) | data[position + 3]
                start = position + 8
            elif length == 127:
                length = int.from_bytes(data[position + 2 : position + 10], "big")
                start = position + 14
            else:
                break
            stop = start + length
            if stop > end or length >= limit:
                break
            payload = apply_mask(data[start:stop], data[start - 4 : start])
            if head1 == 0x81:
                try:
                    append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    break  # the careful path fails the connection with 1007 and its usual reason
            else:
                append(payload)
            position = stop
        return position

    def receive_eof(self) -> None:
        """The peer closed TCP (or the connection broke): nothing more will be received."""
        self._protocol.receive_eof()
        self.receive_done = True

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = frame.data
        if self.streaming and (opcode is _TEXT or opcode is _BINARY or opcode is _CONT):
            self._on_part(opcode, data, frame.fin)
        elif opcode is _TEXT:
            if frame.fin:
                try:
                    self.messages.append(bytes(data).decode("utf-8"))  # bytes(b) is b itself: no copy
                except UnicodeDecodeError as exc:
                    self._fail_utf8(exc)
            else:
                self._decoder = _utf8_decoder()
                self._text_parts = []
                self._decode_fragment(data, False)
        elif opcode is _BINARY:
            if frame.fin:
                self.messages.append(bytes(data))
            else:
                self._decoder = None
                self._fragments = [bytes(data)]
        elif opcode is _CONT:
            if self._decoder is not None:
                self._decode_fragment(data, frame.fin)
                if frame.fin and self._failed is None:
                    self.messages.append("".join(self._text_parts))
                    self._text_parts = []
                    self._decoder = None
            else:
                self._fragments.append(bytes(data))
                if frame.fin:
                    self.messages.append(b"".join(self._fragments))
                    self._fragments = []
        elif opcode is _PONG:
            self.pongs_received += 1
        elif opcode is _CLOSE:
            self.receive_done = True
            self._fragments = []
            self._text_parts = []
            self._decoder = None
        # Pings are answered by the protocol itself (RFC 6455 §5.5.2).

    def _on_part(self, opcode: Opcode, data: bytes | bytearray | memoryview, fin: bool) -> None:
        if opcode is _TEXT:
            self._decoder = _utf8_decoder()
        elif opcode is _BINARY:
            self._decoder = None
        if self._decoder is not None:
            try:
                part: Message = self._decoder.decode(data, fin)
            except UnicodeDecodeError as exc:
                self._fail_utf8(exc)
                return
            if fin:
                self._decoder = None
        else:
            part = bytes(data)
        self.chunks.append((part, fin))

    def _decode_fragment(self, data: bytes | bytearray | memoryview, final: bool) -> None:
        assert self._decoder is not None
        try:
            self._text_parts.append(self._decoder.decode(data, final))
        except UnicodeDecodeError as exc:
            self._fail_utf8(exc)

    def _fail_utf8(self, exc: UnicodeDecodeError) -> None:
        self.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 in text message: {exc.reason}")

    # Sending.

    def send_message(self, data: Message | bytearray | memoryview, binary: bool | None = None, compress: bool = True) -> None:
        """Queue one whole message: ``str`` as text and bytes-like as binary, unless ``binary`` says otherwise.

        With ``compress=False`` the message goes out uncompressed even when permessage-deflate was negotiated
        (RFC 7692 §6 lets each message choose).
        """
        protocol = self._protocol
        if protocol.state is not _OPEN and not self._held:
            raise self.closed_error()
        if isinstance(data, str):
            payload = data.encode("utf-8")
            text = not binary if binary is not None else True
        else:
            payload = bytes(data) if not isinstance(data, bytes) else data
            text = binary is False
            if text:
                payload.decode("utf-8")  # a text frame must carry valid UTF-8; raises UnicodeDecodeError
        extensions = protocol.extensions
        if self._held:  # answering a message that came before the peer's close or its violation
            frame = Frame(_TEXT if text else _BINARY, payload)
            self._replies.append(frame.serialize(mask=False, extensions=extensions if compress else []))
            return
        if not extensions or not compress:
            # The common case, written directly: an unmasked, unfragmented, uncompressed server frame is a 2-10 byte
            # header and the payload (RFC 6455 §5.2). Profiles showed websockets' Frame.serialize as a hot spot.
            size = len(payload)
            first = 0x81 if text else 0x82
            if size < 126:
                header = _HEADER_SHORT(first, size)
            elif size < 65536:
                header = _HEADER_MEDIUM(first, 126, size)
            else:
                header = _HEADER_LONG(first, 127, size)
            if size <= 1024:
                self._out.append(header + payload)
            else:
                self._out += (header, payload)
            return
        if text:  # compressed: websockets' extension does it
            protocol.send_text(payload)
        else:
            protocol.send_binary(payload)

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated."""
        return bool(self._protocol.extensions)

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a ping frame (at most 125 bytes of payload)."""
        if len(data) > 125:
            raise ValueError("a ping payload is at most 125 bytes (RFC 6455 §5.5)")
        try:
            self._protocol.send_ping(data)
        except InvalidState:
            raise self.closed_error() from None

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with this code and reason (no-op if a close frame was already sent)."""
        if self._protocol.state is not _OPEN:
            return
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)")
        try:
            self._protocol.send_close(code, reason)
        except _WebsocketsProtocolError as exc:
            raise ValueError(f"invalid close code {code}: {exc}") from None

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame with ``code``, stop reading."""
        if self._failed is None:
            self._failed = code
        self._protocol.fail(code, reason)
        self.receive_done = True

    def _held_releasable(self) -> bool:
        """Held closing frames may go once the messages before them are read."""
        return bool(self._held) and not self.messages and not self.chunks

    def has_output(self) -> bool:
        """True when :meth:`data_to_send` has something to return (cheap, for the hot path)."""
        return bool(self._out or self._protocol.writes or self._replies or self._held_releasable())

    def data_to_send(self) -> list[bytes]:
        """Bytes to write to the network, in order; a final ``b""`` asks to half-close TCP."""
        out = self._out
        if out:
            self._out = []
            writes = self._protocol.data_to_send()
            if writes:
                out += writes  # frames we sent go before the protocol's own (pongs, and a close that came later)
        else:
            out = self._protocol.data_to_send()
        if self._replies:
            out = self._replies + out
            self._replies = []
        if self._held_releasable():
            out += self._held
            self._held = []
        return out

    # State.

    @property
    def is_open(self) -> bool:
        """True while messages may still be sent (no close frame sent yet)."""
        return self._protocol.state is _OPEN or bool(self._held)

    @property
    def close_code(self) -> int | None:
        """The close code the handler sees: the peer's, else the one we failed with, else 1006; None while open."""
        return self._close()[0] if self.receive_done else None

    @property
    def close_reason(self) -> str:
        """The close reason matching :attr:`close_code`."""
        return self._close()[1] if self.receive_done else ""

    def _close(self) -> tuple[int, str]:
        protocol = self._protocol
        if protocol.close_rcvd is not None:
            return protocol.close_rcvd.code, protocol.close_rcvd.reason
        sent = protocol.close_sent
        failed = self._failed is not None or (protocol.parser_exc is not None and not isinstance(protocol.parser_exc, EOFError))
        if failed and sent is not None:
            return sent.code, sent.reason
        return CloseCode.ABNORMAL_CLOSURE, ""

    def closed_error(self) -> ConnectionClosed:
        """The exception for an attempt to use this connection once it is closing or closed."""
        if self.receive_done:
            code, reason = self._close()
            return ConnectionClosed(int(code), reason)
        sent = self._protocol.close_sent
        if sent is not None:
            return ConnectionClosed(sent.code, sent.reason)
        return ConnectionClosed(CloseCode.ABNORMAL_CLOSURE)
