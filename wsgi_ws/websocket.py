"""The blocking WebSocket a handler holds: accept, receive, send, close, over one socket.

It works the same under gevent greenlets and under real threads.

Reading: no reader greenlet sits between the socket and the handler. Whoever needs data (``receive``,
``receive_partial``, ``wait_closed``, ``close`` waiting for the peer, the keep-alive check) reads the socket itself if
nobody else is reading, and otherwise waits until the current reader has fed what it read to the protocol. Messages
are never lost between several callers.

Writing is corked: a reply sent while the handler still has received messages to process is queued, and everything
queued goes out in one ``sendall`` when the handler is about to block, when enough is queued, or at the next turn of
the event loop; a send with nothing left to process goes out at once. So a burst of messages parsed from one read is
answered with one write, and a background writer is never delayed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from . import metrics
from .compression import negotiate
from .exceptions import ConnectionClosed
from .handshake import HandshakeRequest, accept_response
from .options import WebSocketOptions
from .protocol import CloseCode, Message, Session

if TYPE_CHECKING:
    from .monitor import ConnectionMonitor

__all__ = ["PartialMessage", "WebSocket"]

log = logging.getLogger("wsgi_ws")

#: Bytes asked of the socket per read (while not streaming).
READ_SIZE = 256 * 1024
#: Queued output above which a send is flushed even while corked.
CORK_LIMIT = 64 * 1024
#: Queued chunks up to this size are joined into one write; a larger chunk is written from its own buffer.
JOIN_LIMIT = 64 * 1024

_PENDING, _OPEN, _FINISHED = "pending", "open", "finished"


class PartialMessage(NamedTuple):
    """A part of a message from :meth:`WebSocket.receive_partial`: ``str`` for text, ``bytes`` for binary."""

    data: Message
    end_of_message: bool


class WebSocket:
    """One WebSocket connection, not yet accepted until :meth:`accept` or the first receive or send.

    Until it is accepted nothing has been sent to the client, and the application may still answer the
    request with an ordinary HTTP response.
    """

    # Slots, not a __dict__: with this many attributes the dict would take about 1.5 KB per idle connection.
    __slots__ = (
        "__weakref__",
        "_aborted",
        "_accepting",
        "_arrivals",
        "_buffered",
        "_close_socket",
        "_corked",
        "_defer",
        "_finish_callbacks",
        "_flush_scheduled",
        "_lock",
        "_monitor",
        "_none_returned",
        "_on_accept",
        "_options",
        "_partial",
        "_read_size",
        "_reader",
        "_reads",
        "_request",
        "_session",
        "_sock",
        "_started",
        "_state",
        "_subprotocol",
        "_waiting",
        "bytes_received",
        "bytes_sent",
        "environ",
        "keep_alive_busy",
        "last_received",
        "messages_received",
        "messages_sent",
        "ping_sent_at",
    )

    def __init__(
        self,
        sock: socket.socket,
        environ: Mapping[str, Any],
        request: HandshakeRequest,
        options: WebSocketOptions,
        *,
        buffered: bytes = b"",
        defer: Callable[[Callable[[], None]], object] | None = None,
        monitor: ConnectionMonitor | None = None,
        on_accept: Callable[[], object] | None = None,
        close_socket: bool = True,
    ) -> None:
        self._sock = sock
        #: The WSGI environ of the upgrade request.
        self.environ = environ
        self._request = request
        self._options = options
        self._buffered = buffered
        self._defer = defer
        self._monitor = monitor
        self._on_accept = on_accept
        self._close_socket = close_socket  # False when the server closes the socket itself (werkzeug, gunicorn gthread)
        self._state = _PENDING
        self._session: Session | None = None
        self._subprotocol: str | None = None
        self._accepting = threading.Lock()  # one implicit accept
        self._lock = threading.Lock()  # protocol state and socket writes
        self._reader = threading.Lock()  # held by whoever is reading the socket
        self._arrivals: threading.Condition | None = None  # signalled after every read; made when first waited on
        self._reads = 0  # reads finished so far; waiters compare it to know a read happened
        self._waiting = 0  # callers waiting in _arrivals
        self._read_size = READ_SIZE
        self._corked = 0
        self._flush_scheduled = False
        self._none_returned = False
        self._aborted: tuple[int, str] | None = None
        self._partial: tuple[Message, bool] | None = None
        self._finish_callbacks: list[Callable[[], object]] = []
        self._started = time.monotonic()
        #: Monotonic time of the last bytes received (keep-alive).
        self.last_received = self._started
        #: Monotonic time of the unanswered keep-alive ping, or None.
        self.ping_sent_at: float | None = None
        #: True while a keep-alive action for this connection is under way.
        self.keep_alive_busy = False
        #: Messages and bytes each way, for logs and metrics.
        self.messages_received = self.messages_sent = 0
        self.bytes_received = self.bytes_sent = 0

    # Request facts.

    @property
    def path(self) -> str:
        """The request path (gevent-websocket's ``ws.path``)."""
        return str(self.environ.get("PATH_INFO", ""))

    @property
    def origin(self) -> str | None:
        """The request's ``Origin`` header, or None."""
        return self._request.origin

    @property
    def offered_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order."""
        return self._request.subprotocols

    @property
    def peer(self) -> str:
        """The client's address, ``host:port``."""
        return f"{self.environ.get('REMOTE_ADDR', '?')}:{self.environ.get('REMOTE_PORT', '?')}"

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol in use; before accept, the one an implicit accept will choose (or None)."""
        if self._state is _PENDING:
            return self._request.select_subprotocol(self._options.subprotocols)
        return self._subprotocol

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated for this connection."""
        return self._session is not None and self._session.compressed

    @property
    def accepted(self) -> bool:
        """True once the 101 response was sent."""
        return self._state is not _PENDING

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: no more messages can be sent or received."""
        session = self._session
        if session is None:
            return self._state is _FINISHED
        finished = session.receive_done and not session.messages and not session.chunks
        return self._state is _FINISHED or self._aborted is not None or not session.is_open or finished

    @property
    def close_code(self) -> int | None:
        """Why the connection closed: the peer's close code, our failure code, or 1006; None while open."""
        if self._aborted is not None:
            return self._aborted[0]
        return None if self._session is None else self._session.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason that goes with :attr:`close_code`; None while open."""
        if self._aborted is not None:
            return self._aborted[1]
        return None if self._session is None or self._session.close_code is None else self._session.close_reason

    # Opening.

    def reconfigure(self, options: WebSocketOptions) -> None:
        """Use these options for this connection instead (only before accept; a middleware's own options)."""
        if self._state is not _PENDING:
            raise RuntimeError("options can only change before the WebSocket is accepted")
        self._options = options

    def accept(self, subprotocol: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Send the ``101 Switching Protocols`` response; from now on only WebSocket frames flow.

        ``subprotocol`` must be one the client offered; by default the first of the configured
        ``subprotocols`` that the client offered is chosen, if any.
        """
        if self._state is not _PENDING:
            raise RuntimeError("this WebSocket was already accepted")
        if subprotocol is None:
            subprotocol = self._request.select_subprotocol(self._options.subprotocols)
        elif subprotocol not in self._request.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client (offered: {list(self._request.subprotocols)})")
        options = self._options
        negotiated = negotiate(self._request.extensions, options)
        if negotiated is not None:
            headers = (("Sec-WebSocket-Extensions", negotiated[0]), *headers)
        response = accept_response(self._request.key, subprotocol, headers)
        session = Session(options.max_message_size, options.max_frame_size, [negotiated[1]] if negotiated else None)
        self._sock.settimeout(None)
        self._sock.sendall(response)
        self._subprotocol = subprotocol
        self._session = session
        self._state = _OPEN
        if self._on_accept is not None:
            self._on_accept()  # the server glue lets go of what only HTTP needed
            self._on_accept = None
        self.last_received = time.monotonic()
        if self._monitor is not None:
            self._monitor.add(self)
        metrics.opened(self)
        log.info(
            "ws.accept path=%s peer=%s subprotocol=%s compression=%s",
            self.path,
            self.peer,
            subprotocol or "-",
            "permessage-deflate" if negotiated else "-",
        )
        if self._buffered:
            data, self._buffered = self._buffered, b""
            with self._lock:
                session.receive_data(data)
                self._write_pending()

    def _open_session(self) -> Session:
        """Accept implicitly (once, even when several greenlets or threads get here together)."""
        with self._accepting:
            if self._session is None:
                if self._state is _FINISHED:
                    raise ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, "the request ended before the WebSocket was accepted")
                self.accept()
        assert self._session is not None
        return self._session

    # Receiving.

    def receive(self, timeout: float | None = None) -> Message | None:
        """Return the next whole message (``str`` for text, ``bytes`` for binary), or None once closed.

        The first call after the connection closed returns None (then :attr:`close_code` says why); a
        further call raises :class:`ConnectionClosed`. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        session = self._session or self._open_session()
        messages = session.messages
        if messages:
            self.messages_received += 1
            return messages.popleft()
        if session.streaming:
            return self._receive_assembled(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._wait_for(session, messages.__len__, deadline):
            try:
                message = messages.popleft()
            except IndexError:  # another receiver was quicker
                continue
            self.messages_received += 1
            return message
        self._end_of_messages(session)
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
            self._read_size = max(limit + 14, min(READ_SIZE, 16 * limit))  # memory stays a small multiple of the part size
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._partial is None:
                if session.messages:  # whole messages completed before streaming began
                    self._partial = (session.messages.popleft(), True)
                elif session.chunks:
                    self._partial = _coalesce(session.chunks, limit)
                elif not self._wait_for(session, lambda: bool(session.messages or session.chunks), deadline):
                    self._end_of_messages(session)
                    return None
                else:
                    continue
            data, end = self._partial
            head, rest = _split_at(data, limit)
            if rest:
                self._partial = (rest, end)
                return PartialMessage(head, False)
            self._partial = None
            if end:
                self.messages_received += 1
            return PartialMessage(head, end)

    def _receive_assembled(self, timeout: float | None) -> Message | None:
        """A whole message from parts, once streaming is on; still bounded by ``max_message_size``."""
        parts: list[Message] = []
        size = 0
        limit = self._options.max_message_size
        while True:
            part = self.receive_partial(timeout)
            if part is None:
                return None
            parts.append(part.data)
            size += len(part.data)
            if limit is not None and size > limit:
                self.abort(CloseCode.MESSAGE_TOO_BIG, f"message over {limit} bytes")
                return None
            if part.end_of_message:
                return "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the connection is closed; True if it is, False after ``timeout`` seconds.

        Meant for a handler that hands the socket to a background worker (ASP.NET's TaskCompletionSource
        pattern): while nobody else is receiving it reads, so that pings are answered and the client's close is
        noticed, and keeps received messages queued for a later :meth:`receive` (up to ``max_message_size``
        bytes of them; past that it stops reading until someone receives).
        """
        session = self._session or self._open_session()
        deadline = None if timeout is None else time.monotonic() + timeout
        limit = self._options.max_message_size or READ_SIZE
        while not self.closed:
            unread = sum(len(message) for message in session.messages) + sum(len(part) for part, _ in session.chunks)
            try:
                if unread < limit:
                    self._wait_for(session, lambda: False, deadline)
                else:
                    self._wait_arrival(self._reads, deadline)
            except TimeoutError:
                return False
        return True

    def _wait_for(self, session: Session, ready: Callable[[], object], deadline: float | None) -> bool:
        """Read, or wait for the reader, until ``ready()``; False if nothing more can be received."""
        while not ready():
            if session.receive_done or self._aborted is not None:
                return False
            seen = self._reads
            if self._reader.acquire(blocking=False):
                try:
                    if not ready() and not session.receive_done:
                        self._read_once(session, deadline)
                finally:
                    self._reader.release()
                    self._read_done()
            else:
                self.flush()
                self._wait_arrival(seen, deadline)
        return True

    def _wait_arrival(self, seen: int, deadline: float | None) -> None:
        """Wait until a read finishes after ``seen`` reads (raises TimeoutError at ``deadline``)."""
        if self._arrivals is None:
            with self._accepting:
                if self._arrivals is None:
                    self._arrivals = threading.Condition(threading.Lock())
        arrivals = self._arrivals
        with arrivals:
            self._waiting += 1
            try:
                while self._reads == seen:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("no message within the receive timeout")
                    arrivals.wait(remaining)
            finally:
                self._waiting -= 1

    def _read_done(self) -> None:
        self._reads += 1
        arrivals = self._arrivals
        if self._waiting and arrivals is not None:
            with arrivals:
                arrivals.notify_all()

    def _read_once(self, session: Session, deadline: float | None, wait: bool = True) -> None:
        """Flush what is queued, read once, feed the protocol (the reader lock is held)."""
        self.flush()
        sock = self._sock
        try:
            if not wait:
                sock.settimeout(0.0)
            elif deadline is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.0))
            data = sock.recv(self._read_size)
            self.bytes_received += len(data)
        except (BlockingIOError, ssl.SSLWantReadError):  # a read-ahead found nothing to read (TLS says so its own way)
            return
        except TimeoutError:
            if not wait:
                return
            raise TimeoutError("no message within the receive timeout") from None
        except OSError:
            data = b""
        finally:
            if not wait or deadline is not None:
                with contextlib.suppress(OSError):
                    sock.settimeout(None)
        with self._lock:
            if data:
                self.last_received = time.monotonic()
                self.ping_sent_at = None
                session.receive_data(data)
            else:
                session.receive_eof()
            if session.has_output():
                self._write_pending()

    def _end_of_messages(self, session: Session) -> None:
        """Allow one None to mark the end; raise ConnectionClosed on any later receive."""
        self.flush()  # the closing frame held back for unread messages goes out now
        if self._none_returned:
            raise self._closed_error(session)
        self._none_returned = True

    def _closed_error(self, session: Session) -> ConnectionClosed:
        if self._aborted is not None:
            return ConnectionClosed(*self._aborted)
        return session.closed_error()

    def __iter__(self) -> Iterator[Message]:
        """Yield messages until the connection closes."""
        receive = self.receive
        while True:
            message = receive()
            if message is None:
                return
            yield message

    # Sending.

    def send(self, message: Message | bytearray | memoryview, binary: bool | None = None, *, compress: bool = True) -> None:
        """Send one message: ``str`` as a text frame, bytes-like as a binary frame (``binary`` overrides).

        With permessage-deflate negotiated, ``compress=False`` sends this message uncompressed (for data that does
        not compress, such as images). Safe to call from several greenlets or threads at once: frames never
        interleave. Raises :class:`ConnectionClosed` once the connection is closing or closed.
        """
        session = self._session or self._open_session()
        with self._lock:
            if self._aborted is not None:
                raise ConnectionClosed(*self._aborted)
            session.send_message(message, binary, compress)
            self.messages_sent += 1
            if self._defer is not None and session.messages:
                self._corked += len(message)
                if self._corked < CORK_LIMIT:
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        self._defer(self._deferred_flush)
                    return
            if not self._write_pending():
                raise self._closed_error(session)

    def ping(self, data: bytes = b"") -> None:
        """Send a ping frame now (the peer answers with a pong)."""
        session = self._session or self._open_session()
        with self._lock:
            session.send_ping(data)
            self._write_pending()

    def flush(self) -> None:
        """Write every queued frame now."""
        session = self._session
        if session is not None and session.has_output():
            with self._lock:
                self._write_pending()

    def _deferred_flush(self) -> None:
        self._flush_scheduled = False
        if self._state is _OPEN:
            self.flush()

    def _write_pending(self) -> bool:
        """Write what the protocol has queued, in order (``self._lock`` held); False if the socket broke."""
        assert self._session is not None
        chunks = self._session.data_to_send()
        self._corked = 0
        if not chunks:
            return True
        eof = not chunks[-1]
        try:
            if len(chunks) == 1:
                if chunks[0]:
                    self._send_all(chunks[0])
            else:
                self._send_chunks(chunks)
            if eof:
                self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._session.receive_eof()
            return False
        return True

    def _send_chunks(self, chunks: list[bytes]) -> None:
        """Write ``chunks`` in order, small ones joined into one write; a large one is not copied into the join.

        Only its first ``JOIN_LIMIT`` bytes join the small chunks before it (so a frame header never travels
        alone); the rest is written from the chunk itself, which saves copying a large message once more.
        """
        pending: list[bytes | memoryview] = []
        for chunk in chunks:
            if len(chunk) <= JOIN_LIMIT:
                pending.append(chunk)
                continue
            view = memoryview(chunk)
            pending.append(view[:JOIN_LIMIT])
            self._send_all(b"".join(pending))
            self._send_all(view[JOIN_LIMIT:])
            pending = []
        data = b"".join(pending)
        if data:
            self._send_all(data)

    def _send_all(self, data: bytes | memoryview) -> None:
        """Write all of ``data``: ``send`` in a loop (gevent's ``sendall`` asks ``getsockopt`` on every call)."""
        send = self._sock.send
        self.bytes_sent += len(data)
        sent = send(data)
        if sent < len(data):
            view = memoryview(data)
            while sent < len(view):
                sent += send(view[sent:])

    # Keep-alive (driven by the ConnectionMonitor).

    def keep_alive_ping(self, now: float) -> None:
        """Send the keep-alive ping."""
        try:
            self.ping_sent_at = now
            self.ping(b"keep-alive")
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.keep_alive_busy = False

    def keep_alive_expired(self, timeout: float) -> None:
        """The ping went unanswered for ``timeout`` s: look once more for unread data, else close with 1011."""
        try:
            session = self._session
            sent = self.ping_sent_at
            if session is None or sent is None or self.closed:
                return
            if self._reader.acquire(blocking=False):  # nobody is reading: read ahead, as .NET does
                try:
                    self._read_once(session, None, wait=False)
                finally:
                    self._reader.release()
                    self._read_done()
            if self.last_received >= sent:
                return
            log.warning(
                "ws.timeout path=%s peer=%s: no pong or data within %.1f s of a keep-alive ping; the client stopped answering, "
                "closing with 1011",
                self.path,
                self.peer,
                timeout,
            )
            self.abort(CloseCode.INTERNAL_ERROR, "keep-alive timeout")
        finally:
            self.keep_alive_busy = False

    def abort(self, code: int, reason: str) -> None:
        """Close at once without waiting for the peer: a close frame if the socket takes it, then TCP is cut.

        Safe to call from any greenlet or thread, even while another is blocked sending to this connection.
        """
        session = self._session
        if session is None or self._aborted is not None:
            return
        self._aborted = (code, reason)
        if self._lock.acquire(blocking=False):
            try:
                session.fail(code, reason)
                data = b"".join(session.data_to_send())
                self._sock.settimeout(0.0)
                try:
                    self._sock.send(data)
                except OSError:
                    pass
                finally:
                    self._sock.settimeout(None)
            except OSError:
                pass
            finally:
                self._lock.release()
        self._cut()

    # Closing.

    def close(self, code: int = 1000, reason: str | bytes = "") -> None:
        """Close with ``code`` and ``reason``; wait at most ``close_timeout`` seconds for the peer's close frame.

        Messages that arrive meanwhile are discarded. A no-op when already closed.
        """
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8")
        session = self._session or self._open_session()
        if self._aborted is not None:
            return
        with self._lock:
            session.send_close(code, reason)
            self._write_pending()
        self._await_peer_close(session)
        session.messages.clear()
        session.chunks.clear()

    def close_quietly(self, code: int, reason: str) -> None:
        """:meth:`close`, ignoring a connection that is already gone (used on shutdown)."""
        with contextlib.suppress(ConnectionClosed, OSError, ValueError):
            self.close(code, reason)

    def _await_peer_close(self, session: Session) -> None:
        timeout = self._options.close_timeout
        try:
            self._wait_for(session, lambda: False, time.monotonic() + timeout)
        except TimeoutError:
            log.info("ws.timeout path=%s peer=%s: no close frame within %.1f s; closing TCP", self.path, self.peer, timeout)
            self._cut()
            with self._lock:
                session.receive_eof()

    def _cut(self) -> None:
        """Shut the socket down both ways: every greenlet blocked on it wakes up."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def on_finish(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the connection has ended (the hub uses it to leave every group)."""
        self._finish_callbacks.append(callback)

    def finish(self, error: BaseException | None = None) -> None:
        """End the connection after the handler returned (or raised ``error``): close frame, then TCP.

        Called by the server glue, never by handlers.
        """
        if self._state is not _OPEN:
            return
        session = self._session
        assert session is not None
        try:
            if isinstance(error, ConnectionClosed):
                log.info("WebSocket handler for %s ended on a closed connection (%s)", self.path, error)
            elif error is not None:
                log.error("WebSocket handler for %s raised; closing with 1011", self.path, exc_info=error)
                if session.is_open and self._aborted is None:
                    self.close(CloseCode.INTERNAL_ERROR, "internal server error")
            if session.is_open and self._aborted is None:
                self.close()
            elif not session.receive_done and self._aborted is None:
                self._await_peer_close(session)
            self.flush()
        except (ConnectionClosed, OSError):
            pass
        finally:
            self._state = _FINISHED
            if self._monitor is not None:
                self._monitor.discard(self)
            self._teardown()
            for callback in self._finish_callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("WebSocket %s: a finish callback failed", self.path)
            metrics.closed(self)
            log.info(
                "ws.close path=%s peer=%s code=%s reason=%r duration=%.1fs messages_in=%d messages_out=%d bytes_in=%d bytes_out=%d",
                self.path,
                self.peer,
                self.close_code,
                self.close_reason or "",
                time.monotonic() - self._started,
                self.messages_received,
                self.messages_sent,
                self.bytes_received,
                self.bytes_sent,
            )

    def _teardown(self) -> None:
        """Half-close, wait briefly for the peer's FIN so no RST eats our close frame, then close the socket."""
        sock = self._sock
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + self._options.close_timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                if not sock.recv(READ_SIZE):
                    break
        except OSError:
            pass
        finally:
            if self._close_socket:
                sock.close()
            else:
                self._cut()  # the server's own reader sees EOF and closes the socket


def _coalesce(chunks: deque[tuple[Message, bool]], limit: int) -> tuple[Message, bool]:
    """Take the next part, joined with the parts of the same message already received, up to about ``limit``."""
    data, end = chunks.popleft()
    if end or not chunks or len(data) >= limit:
        return data, end
    pieces = [data]
    size = len(data)
    while chunks and not end and size < limit:
        data, end = chunks.popleft()
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
