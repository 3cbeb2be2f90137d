"""The blocking WebSocket a handler holds: accept, receive, send, close, over one socket.

It works the same under gevent greenlets and under real threads. The socket work (who reads, corked writes) is the
:class:`~wsgi_ws.connection.transport.Transport`'s, the RFC 6455 work the
:class:`~wsgi_ws.protocol.session.Session`'s, and where the connection is in its life the
:class:`~wsgi_ws.protocol.state.Lifecycle`'s; this class is the API over the three. Registering the connection,
logging, metrics and the end after the handler returns belong to the server integration
(``wsgi_ws.integrations.handler``), which calls :meth:`WebSocket.end`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..exceptions import InvalidArgument, InvalidState, from_protocol
from ..metrics import SIZE_INDEX
from ..options import WebSocketOptions
from ..protocol.assembler import Message, PartialMessage
from ..protocol.errors import ProtocolError
from ..protocol.handshake import HandshakeRequest
from ..protocol.session import CloseCode, Session
from ..protocol.state import ConnectionState, Event, Lifecycle
from .info import ConnectionInfo
from .json_messages import JSONMessages
from .limits import MessageRate, refuse
from .opening import open_session
from .transport import READ_SIZE, Transport

__all__ = ["PartialMessage", "WebSocket"]

log = logging.getLogger("wsgi_ws")

_CONNECTING, _OPEN, _CLOSING, _CLOSED = ConnectionState


def _never() -> bool:
    return False


class WebSocket(JSONMessages, ConnectionInfo):
    """One WebSocket connection, not yet accepted until :meth:`accept` or the first receive or send.

    Until it is accepted nothing has been sent to the client, and the application may still answer the
    request with an ordinary HTTP response. Every method may be called from any greenlet or thread.
    """

    __slots__ = ("_on_accept",)  # the server's registration, called once the 101 is sent

    def __init__(
        self,
        sock: socket.socket,
        environ: Mapping[str, Any],
        request: HandshakeRequest,
        options: WebSocketOptions,
        *,
        buffered: bytes = b"",
        defer: Callable[[Callable[[], None]], object] | None = None,
        on_accept: Callable[[WebSocket], object] | None = None,
        close_socket: bool = True,
    ) -> None:
        #: The WSGI environ of the upgrade request.
        self.environ = environ
        self._request = request
        self._options = options
        self._buffered = buffered  # bytes the HTTP parser read past the request head
        self._on_accept = on_accept  # the server's registration, called once the 101 is sent
        self._close_socket = close_socket  # False when the server closes the socket itself (werkzeug, gunicorn gthread)
        self._lifecycle = Lifecycle()
        #: The socket and its reading and writing (``defer`` runs a callable at the event loop's next turn: corking).
        self.transport = Transport(sock, self._lifecycle, defer, self)
        self._session: Session | None = None
        self._subprotocol: str | None = None
        self._end_reported = False  # receive() returned its one None
        self._finish_callbacks: list[Callable[[], object]] | None = None
        self._started = time.monotonic()
        #: Messages each way, for logs and metrics.
        self.messages_received = self.messages_sent = 0
        self.message_sizes = None
        self.user = None
        self._rate = MessageRate.of(options.max_messages_per_second, options.max_bytes_per_second)

    # Opening.

    def accept(self, subprotocol: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Send the ``101 Switching Protocols`` response; from now on only WebSocket frames flow.

        ``subprotocol`` must be one the client offered; by default the first of the configured ``subprotocols``
        that the client offered is chosen, if any. Raises :class:`InvalidState` when already accepted or when the
        request has ended, :class:`InvalidArgument` for a subprotocol not offered or a header with a line break.
        """
        with self.transport.lock:  # one accept, even when several greenlets or threads accept implicitly at once
            self._accept(subprotocol, headers)
        on_accept, self._on_accept = self._on_accept, None
        if on_accept is not None:
            on_accept(self)

    def _accept(self, subprotocol: str | None, headers: tuple[tuple[str, str], ...]) -> None:
        if self._lifecycle.state is not _CONNECTING:
            raise InvalidState("this WebSocket was already accepted" if self._session else "the request has already ended")
        response, session, subprotocol = open_session(self._request, self._options, subprotocol, headers)
        transport = self.transport
        sock = transport.sock
        sock.settimeout(None)
        sent = sock.send(response)  # the 101 fits the socket buffer: one send (gevent's sendall first asks getsockopt)
        if sent < len(response):
            sock.sendall(memoryview(response)[sent:])
        self._subprotocol = subprotocol
        transport.session = self._session = session
        self._lifecycle.handle(Event.ACCEPT)
        transport.last_received = time.monotonic()
        if self._buffered:
            data, self._buffered = self._buffered, b""
            session.receive_data(data)
            transport.write_pending()
            transport.note_closing()

    def _open_session(self) -> Session:
        """Accept implicitly (once, even when several greenlets or threads get here together)."""
        try:
            self.accept()
        except InvalidState:  # another caller accepted first, or the request ended
            if self._session is None:
                raise self._closed_error() from None
        assert self._session is not None
        return self._session

    # Receiving.

    def receive(self, timeout: float | None = None) -> Message | None:
        """Return the next whole message (``str`` for text, ``bytes`` for binary), or None once closed.

        The first call after the connection closed returns None (then :attr:`close_code` says why); a further call
        raises :class:`ConnectionClosed`; ``TimeoutError`` after ``timeout`` seconds. Over a message limit: 1008."""
        session = self._session or self._open_session()
        assembler = session.assembler
        if assembler:  # whole messages wait (the assembler is their queue; truth is one C call)
            return _received(self, assembler.take())
        if session.streaming:
            return _receive_assembled(self, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.transport.wait_for(session, assembler.waiting, deadline):
            message = assembler.pop_message()
            if message is not None:  # else another receiver was quicker
                return _received(self, message)
        self._end_of_messages()
        return None

    def receive_partial(self, timeout: float | None = None) -> PartialMessage | None:
        """Return the next part of a message, at most ``receive_buffer_size`` bytes, and whether the message ended.

        Like ASP.NET's ``ReceiveAsync`` with ``EndOfMessage``: a handler can stream a message of any size with memory
        bounded by ``receive_buffer_size``; ``max_message_size`` and ``max_frame_size`` do not apply once a handler
        streams. Returns None once the connection is closed, like :meth:`receive`.
        """
        session = self._session or self._open_session()
        limit = self._options.receive_buffer_size
        if not session.streaming:
            session.start_streaming(limit)
            self.transport.read_size = max(limit + 14, min(READ_SIZE, 16 * limit))  # memory stays a small multiple of a part
        assembler = session.assembler
        deadline = None if timeout is None else time.monotonic() + timeout
        while (part := assembler.pop_part(limit)) is None:
            if not self.transport.wait_for(session, assembler.has_unread, deadline):
                self._end_of_messages()
                return None
        if part.end_of_message:
            self.messages_received += 1
        return part

    def _over_limit(self) -> Message | None:
        """Over ``max_messages_per_second`` or ``max_bytes_per_second``: closed with 1008 (connection/limits.py)."""
        refuse(self, self._rate)
        self._end_of_messages()
        return None

    def _end_of_messages(self) -> None:
        """Allow one None to mark the end; raise ConnectionClosed on any later receive."""
        self.transport.flush()  # the closing frame held back for unread messages goes out now
        if self._end_reported:
            raise self._closed_error()
        self._end_reported = True

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed (or nothing more can arrive); False after ``timeout`` seconds.

        Meant for a handler that hands the socket to a background worker (ASP.NET's TaskCompletionSource
        pattern): while nobody else is receiving it reads, so that pings are answered and the client's close is
        noticed, and keeps received messages queued for a later :meth:`receive` (up to ``max_message_size``
        bytes of them; past that it stops reading until someone receives).
        """
        session = self._session or self._open_session()
        transport = self.transport
        deadline = None if timeout is None else time.monotonic() + timeout
        limit = self._options.max_message_size or READ_SIZE
        try:
            while not self.closed:
                if session.assembler.unread_size() >= limit:
                    transport.wait_arrival(transport.reads, deadline)
                elif not transport.wait_for(session, _never, deadline):
                    break  # the peer is gone or closed: nothing more will arrive
        except TimeoutError:
            return False
        return True

    def __iter__(self) -> Iterator[Message]:
        """Yield messages until the connection closes (until :meth:`receive` returns None)."""
        return iter(self.receive, None)

    # Sending.

    def send(self, message: Message | bytearray | memoryview, binary: bool | None = None, *, compress: bool = True) -> None:
        """Send one message: ``str`` as a text frame, bytes-like as a binary frame (``binary`` overrides).

        With permessage-deflate negotiated, ``compress=False`` sends this message uncompressed (for data that does
        not compress, such as images). Safe to call from several greenlets or threads at once: frames never
        interleave. Raises :class:`ConnectionClosed` once the connection is closing or closed, and
        :class:`InvalidArgument` for bytes sent as text (``binary=False``) that are not UTF-8.
        """
        session = self._session or self._open_session()
        transport = self.transport
        with transport.lock:
            if self._lifecycle.aborted is not None:
                raise self._closed_error()
            try:
                session.send_message(message, binary, compress)
            except ProtocolError:
                raise self._closed_error() from None
            except UnicodeDecodeError as exc:
                raise InvalidArgument(f"a text message must be UTF-8: {exc}") from None
            self.messages_sent += 1
            if (sizes := self.message_sizes) is not None:  # while metrics are exported: SizeBuckets.add, inline
                out, size = sizes[1], len(message)
                out.counts[SIZE_INDEX[(size - 1).bit_length()]] += 1
                out.total += size
            # Cork while the handler has received messages left to answer: it will send again soon.
            if transport.corking and session.assembler and transport.cork(len(message)):
                return
            if not transport.write_pending():
                raise self._closed_error()

    def ping(self, data: bytes = b"") -> None:
        """Send a ping frame now (the peer answers with a pong); at most 125 bytes of ``data``."""
        session = self._session or self._open_session()
        transport = self.transport
        with transport.lock:
            try:
                session.send_ping(data)
            except ProtocolError as exc:
                raise from_protocol(exc) from None
            transport.write_pending()

    def flush(self) -> None:
        """Write every queued frame now."""
        self.transport.flush()

    # Closing.

    def abort(self, code: int, reason: str) -> None:
        """Close at once without waiting for the peer: a close frame if the socket takes it, then TCP is cut.

        Safe to call from any greenlet or thread, even while another is blocked sending to this connection.
        """
        session = self._session
        if session is None or not self._lifecycle.abort(code, reason):
            return
        transport = self.transport
        if transport.lock.acquire(blocking=False):
            try:
                session.fail(code, reason)
                transport.write_now(b"".join(session.data_to_send()))
            finally:
                transport.lock.release()
        transport.cut()

    def close(self, code: int = 1000, reason: str | bytes = "") -> None:
        """Close with ``code`` and ``reason``; wait at most ``close_timeout`` seconds for the peer's close frame.

        Messages that arrive meanwhile are discarded. A no-op when already closed; :class:`InvalidArgument` for a
        code that may not be sent (RFC 6455 §7.4) or a reason over 123 bytes of UTF-8.
        """
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8")
        session = self._session or self._open_session()
        if self._lifecycle.aborted is not None:
            return
        transport = self.transport
        with transport.lock:
            try:
                session.send_close(code, reason)
            except ProtocolError as exc:
                raise from_protocol(exc) from None
            transport.write_pending()
            transport.note_closing()
        self._await_peer_close(session)
        session.assembler.discard()

    def _await_peer_close(self, session: Session) -> None:
        timeout = self._options.close_timeout
        transport = self.transport
        try:
            transport.wait_for(session, _never, time.monotonic() + timeout)
        except TimeoutError:
            log.info("ws.timeout path=%s peer=%s: no close frame within %.1f s; closing TCP", self.path, self.peer, timeout)
            transport.cut()
            with transport.lock:
                session.receive_eof()
                transport.note_closing()

    def on_finish(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the connection has ended (the hub uses it to leave every group)."""
        if self._finish_callbacks is None:
            self._finish_callbacks = []
        self._finish_callbacks.append(callback)

    def end(self) -> None:
        """Complete the closing once the handler is done: close with 1000 if still open, wait for the peer, linger.

        Server-facing: the integration that ran the handler calls it once; the lifecycle ends CLOSED.
        """
        session = self._session
        if session is None:
            self.request_ended()
            return
        lifecycle = self._lifecycle
        try:
            if lifecycle.aborted is None:
                if session.is_open:
                    self.close()
                elif not session.receive_done:
                    self._await_peer_close(session)
            self.transport.flush()
        except OSError:  # ConnectionClosed, or the socket broke: nothing more to say to the peer
            pass
        finally:
            lifecycle.handle(Event.CLOSE_DONE)
            self.transport.linger_and_close(self._options.close_timeout, self._close_socket)


def _received(ws: WebSocket, message: Message) -> Message | None:
    """A whole message was received: count it (and its size), then hand it over, unless it is over the rate limit."""
    ws.messages_received += 1
    if (sizes := ws.message_sizes) is not None:  # while metrics are exported: SizeBuckets.add, inline
        received, size = sizes[0], len(message)
        received.counts[SIZE_INDEX[(size - 1).bit_length()]] += 1
        received.total += size
    rate = ws._rate
    return message if rate is None or rate.allows(message) else ws._over_limit()


def _receive_assembled(ws: WebSocket, timeout: float | None) -> Message | None:
    """A whole message from parts, once streaming is on; still bounded by ``max_message_size``."""
    parts: list[Message] = []
    size = 0
    limit = ws.options.max_message_size
    while True:
        part = ws.receive_partial(timeout)
        if part is None:
            return None
        parts.append(part.data)
        size += len(part.data)
        if limit is not None and size > limit:
            ws.abort(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
            return None
        if part.end_of_message:
            return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]
