"""The RFC 6455 state of one accepted connection, I/O free: bytes in, whole messages out, and back.

Framing, unmasking (C-accelerated), control frames, close codes and size limits are the work of the
``websockets`` package's sans-I/O :class:`websockets.protocol.Protocol`; this module adds what a blocking
server needs on top: the :class:`~wsgi_ws.protocol.assembler.Assembler` (fragments to ``str`` or ``bytes``, UTF-8
that fails fast on each fragment, RFC 6455 §8.1), closing frames held until the messages before them are read, and
the close code the handler should see. Whole small messages between others take the fast path of
:func:`~wsgi_ws.protocol.frames.read_simple_frames`; anything else, from the first frame that is not such a frame on,
goes the careful way described above.

Call order: after :meth:`Session.receive_data`, :meth:`Session.receive_eof` or any ``send_*`` method, call
:meth:`Session.data_to_send` and write what it returns; an empty ``bytes`` at the end means "half-close TCP".
Take received messages from :attr:`Session.assembler`.
"""

from __future__ import annotations

import logging

from websockets.exceptions import InvalidState
from websockets.exceptions import ProtocolError as _WebsocketsProtocolError
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from .assembler import Assembler, Message
from .errors import SessionClosed, UsageError
from .frames import NO_LIMIT, DeflateParams, FrameSplitter, add_server_frame, read_simple_frames

__all__ = ["PONGS_OWED", "CloseCode", "Message", "Session"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN

#: The logger the websockets package's protocol writes to. Its INFO lines ("connection closed") say nothing the
#: ``ws.close`` line does not, without path or peer: they are shown only when asked for (set this logger's level).
PROTOCOL_LOGGER = logging.getLogger("wsgi_ws.protocol")
if PROTOCOL_LOGGER.level == logging.NOTSET:
    PROTOCOL_LOGGER.setLevel(logging.WARNING)

#: Pongs owed (queued, not yet written) past which the pong of a new ping replaces the last one owed.
PONGS_OWED = 64


class _ServerProtocol(Protocol):
    """websockets' protocol, with a close frame allowed in the middle of a fragmented message, and pongs coalesced.

    RFC 6455 §5.4 lets control frames, close included, be injected between the fragments of a message;
    websockets 17 fails such a close with 1002 (Autobahn case 7.1.5). The unfinished message is dropped
    and the close is answered normally.

    A ping flood gets a bounded number of pongs: once :data:`PONGS_OWED` pongs wait to be written, the pong of a new
    ping replaces the last of them (RFC 6455 §5.5.3 lets an endpoint that still owes pongs answer only the most recent
    ping). However many pings one read brings, at most that many pongs are queued, the last one answering the last
    ping; a client that reads still gets every ping answered, each in its turn (Autobahn 2.10: ten at once).
    """

    _owed = 0  # pongs queued in _owed_in, the output list they were counted in (data_to_send starts a new one)
    _owed_in: list[bytes] | None = None
    _last_pong: bytes | None = None

    def recv_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _PING and self.state is _OPEN:
            self._owe_pong(frame)
            return
        if opcode is _CLOSE:
            self.current_size = None
        super().recv_frame(frame)

    def _owe_pong(self, ping: Frame) -> None:
        """Queue the pong of ``ping`` (RFC 6455 §5.5.2), in place of the last one owed once too many are owed."""
        pong_frame = Frame(_PONG, ping.data)
        if self.debug:
            self.logger.debug("> %s", pong_frame)
        pong = pong_frame.serialize(mask=False, extensions=self.extensions)
        writes = self.writes
        if self._owed_in is not writes:
            self._owed_in, self._owed = writes, 0
        if self._owed >= PONGS_OWED and writes and writes[-1] is self._last_pong:
            writes[-1] = pong  # nothing was queued after the last pong owed: this one answers both pings
        else:
            writes.append(pong)
            self._owed += 1
        self._last_pong = pong


class Session:
    """One accepted WebSocket connection, server side, without I/O."""

    __slots__ = (  # one per open connection: no per-instance dict
        "_failed",
        "_held",
        "_out",
        "_protocol",
        "_replies",
        "_splitter",
        "_stream_chunk_size",
        "assembler",
        "pongs_received",
        "receive_done",
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
            logger=logger or PROTOCOL_LOGGER,
        )
        self._protocol.extensions = list(extensions or [])
        # Every byte the fast path leaves goes through the splitter, so a frame still arriving reaches the parser in pieces: invalid
        # UTF-8 is refused as soon as it arrives (RFC 6455 §8.1), and partial reads can bound memory.
        frame_limit = max_frame_size if max_frame_size is not None else max_message_size
        self._splitter = FrameSplitter(None, allow_rsv1=bool(extensions), max_frame_size=frame_limit)
        #: The received messages (or parts), until the handler takes them.
        self.assembler = Assembler()
        #: True once nothing more will be received: a close frame arrived, the peer vanished, or we failed.
        self.receive_done = False
        #: Pong frames received so far (for inspection; keep-alive counts any received byte as an answer).
        self.pongs_received = 0
        self._failed: CloseCode | int | None = None
        self._stream_chunk_size = 0
        self._out: list[bytes] = []  # data frames built here, sent before the protocol's own output
        self._held: list[bytes] = []  # the closing frames, held while earlier messages are unread
        self._replies: list[bytes] = []  # frames sent in answer to those messages meanwhile

    # Receiving.

    @property
    def streaming(self) -> bool:
        """True once partial reads are on (see :meth:`start_streaming`)."""
        return self.assembler.streaming

    def start_streaming(self, chunk_size: int) -> None:
        """Deliver data frames as parts of at most ``chunk_size`` bytes from now on (idempotent).

        The switch happens at the first moment no frame or message is half received; until then whole messages
        keep arriving as such. While streaming, message and frame size limits no longer apply: memory is bounded by
        ``chunk_size`` instead.
        """
        self._stream_chunk_size = chunk_size
        self._enable_streaming_if_between_messages()

    def _enable_streaming_if_between_messages(self) -> None:
        protocol = self._protocol
        assembler = self.assembler
        if assembler.streaming or assembler.in_message:
            return
        assembler.start_streaming()
        self._splitter.chunk_size = self._stream_chunk_size
        self._splitter.max_frame_size = None
        protocol.max_message_size = protocol.max_fragment_size = None

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the network; completed messages go to :attr:`assembler`.

        Bytes that arrive after :meth:`receive_eof` (a reader that was already in ``recv`` when a writer found the
        socket broken) are ignored: the connection has ended.
        """
        protocol = self._protocol
        if protocol.reader.eof:
            return
        splitter = self._splitter
        if protocol.state is _OPEN and protocol.current_size is None and not self._stream_chunk_size and splitter.idle:
            limit = self._simple_frame_limit()
            if limit:
                position = read_simple_frames(data, limit, self.assembler.sink(), self._count_pong)
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
            if self.assembler.has_unread():
                # The closing frame (ours for a violation, or the answer to the peer's close) waits until the handler
                # has read the messages that arrived before it, so it can still answer them (Autobahn 3.2, 4.1.3, ...).
                self._held += protocol.data_to_send()
        elif self._stream_chunk_size and not self.assembler.streaming:
            self._enable_streaming_if_between_messages()

    def _simple_frame_limit(self) -> int:
        """The largest payload the fast path may take now, or 0 when it must leave everything alone.

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
        return NO_LIMIT if limit is None else limit + 1  # + 1: a limit of 0 must not turn the fast path off

    def _count_pong(self) -> None:
        self.pongs_received += 1

    def receive_eof(self) -> None:
        """The peer closed TCP (or the connection broke): nothing more will be received."""
        self._protocol.receive_eof()
        self.receive_done = True

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
            try:
                self.assembler.add_frame(opcode, frame.data, frame.fin)
            except UnicodeDecodeError as exc:
                self.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 in text message: {exc.reason}")
        elif opcode is _PONG:
            self.pongs_received += 1
        elif opcode is _CLOSE:
            self.receive_done = True
            self.assembler.drop_unfinished()
        # Pings are answered by the protocol itself (RFC 6455 §5.5.2).

    # Sending.

    def send_message(self, data: Message | bytearray | memoryview, binary: bool | None = None, compress: bool = True) -> None:
        """Queue one whole message: ``str`` as text and bytes-like as binary, unless ``binary`` says otherwise.

        With ``compress=False`` the message goes out uncompressed even when permessage-deflate was negotiated
        (RFC 7692 §6 lets each message choose). Raises :class:`SessionClosed` once a close frame was sent, and
        ``UnicodeDecodeError`` for bytes sent as text that are not UTF-8.
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
        elif not extensions or not compress:
            add_server_frame(self._out, payload, text)
        elif text:  # compressed: websockets' extension does it
            protocol.send_text(payload)
        else:
            protocol.send_binary(payload)

    def send_frames(self, frames: list[bytes]) -> None:
        """Queue data frames built once for many connections (``server_frame``, or ``deflate_frame`` for :attr:`shared_deflate`).

        Raises :class:`SessionClosed` once a close frame was sent.
        """
        if self._protocol.state is not _OPEN:
            raise self.closed_error()
        self._out += frames

    def writable_now(self) -> bool:
        """True when bytes may go straight to the socket: open, and nothing of ours is waiting to be written first."""
        return self._protocol.state is _OPEN and not self._out and not self._protocol.writes

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated."""
        return bool(self._protocol.extensions)

    @property
    def shared_deflate(self) -> DeflateParams | None:
        """The parameters every connection that resets its deflate context per message shares; None: no sharing."""
        for extension in self._protocol.extensions:
            if isinstance(extension, PerMessageDeflate) and extension.local_no_context_takeover:
                settings = extension.compress_settings
                return extension.local_max_window_bits, settings.get("level", -1), settings.get("memLevel", 8)
        return None

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a ping frame (at most 125 bytes of payload, else :class:`UsageError`)."""
        if len(data) > 125:
            raise UsageError("a ping payload is at most 125 bytes (RFC 6455 §5.5)")
        try:
            self._protocol.send_ping(data)
        except InvalidState:
            raise self.closed_error() from None

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with this code and reason (no-op if a close frame was already sent).

        Raises :class:`UsageError` for a code that may not be sent (RFC 6455 §7.4) or a reason over 123 bytes.
        """
        if self._protocol.state is not _OPEN:
            return
        if len(reason.encode("utf-8")) > 123:
            raise UsageError("a close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)")
        try:
            self._protocol.send_close(code, reason)
        except _WebsocketsProtocolError as exc:
            raise UsageError(f"invalid close code {code}: {exc}") from None

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame with ``code``, stop reading."""
        if self._failed is None:
            self._failed = code
        self._protocol.fail(code, reason)
        self.receive_done = True

    def _held_releasable(self) -> bool:
        """Held closing frames may go once the messages before them are read."""
        return bool(self._held) and not self.assembler.has_unread()

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
            return int(protocol.close_rcvd.code), protocol.close_rcvd.reason
        sent = protocol.close_sent
        failed = self._failed is not None or (protocol.parser_exc is not None and not isinstance(protocol.parser_exc, EOFError))
        if failed and sent is not None:
            return int(sent.code), sent.reason
        return int(CloseCode.ABNORMAL_CLOSURE), ""

    def closed_error(self) -> SessionClosed:
        """The error for an attempt to use this connection once it is closing or closed."""
        protocol = self._protocol
        if self.receive_done:
            code, reason = self._close()
        elif protocol.close_sent is not None:
            code, reason = protocol.close_sent.code, protocol.close_sent.reason
        else:
            code, reason = CloseCode.ABNORMAL_CLOSURE, ""
        return SessionClosed(int(code), reason, protocol.close_rcvd, protocol.close_sent)
