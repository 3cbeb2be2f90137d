"""The blocking WebSocket a handler holds: accept, receive, send, close, over one socket.

It works the same under gevent greenlets and under real threads. Reading happens inside :meth:`WebSocket.receive`
in the caller's greenlet (no reader greenlet in between). Writing is corked: a reply sent while the handler still
has received messages to process is queued, and everything queued goes out in one ``sendall`` when the handler
is about to block, when enough is queued, or at the next turn of the event loop; a send with nothing left to
process goes out at once. So a burst of messages parsed from one read is answered with one write, and a
background writer is never delayed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .exceptions import ConnectionClosed
from .handshake import HandshakeRequest, accept_response
from .options import WebSocketOptions
from .protocol import CloseCode, Message, Session

__all__ = ["WebSocket"]

log = logging.getLogger("wsgi_ws")

#: Bytes asked of the socket per read.
READ_SIZE = 256 * 1024
#: Queued output above which a send is flushed even while corked.
CORK_LIMIT = 64 * 1024

_PENDING, _OPEN, _FINISHED = "pending", "open", "finished"


class WebSocket:
    """One WebSocket connection, not yet accepted until :meth:`accept` or the first receive or send.

    Until it is accepted nothing has been sent to the client, and the application may still answer the
    request with an ordinary HTTP response.
    """

    def __init__(
        self,
        sock: socket.socket,
        environ: Mapping[str, Any],
        request: HandshakeRequest,
        options: WebSocketOptions,
        *,
        buffered: bytes = b"",
        defer: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self._sock = sock
        #: The WSGI environ of the upgrade request.
        self.environ = environ
        self._request = request
        self._options = options
        self._buffered = buffered
        self._defer = defer
        self._state = _PENDING
        self._session: Session | None = None
        self._lock = threading.Lock()  # protocol state and socket writes
        self._reader = threading.Lock()  # one reader of the socket at a time
        self._corked = 0
        self._flush_scheduled = False
        self._none_returned = False
        self._subprotocol: str | None = None
        #: Messages and bytes each way, for logs.
        self.messages_received = self.messages_sent = 0

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
    def subprotocol(self) -> str | None:
        """The subprotocol in use; before accept, the one an implicit accept will choose (or None)."""
        if self._state is _PENDING:
            return self._request.select_subprotocol(self._options.subprotocols)
        return self._subprotocol

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
        return self._state is _FINISHED or not session.is_open or session.receive_done

    @property
    def close_code(self) -> int | None:
        """Why the connection closed: the peer's close code, our failure code, or 1006; None while open."""
        return None if self._session is None else self._session.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason that goes with :attr:`close_code`; None while open."""
        return None if self._session is None or self._session.close_code is None else self._session.close_reason

    # Opening.

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
        response = accept_response(self._request.key, subprotocol, headers)
        options = self._options
        session = Session(options.max_message_size, options.max_frame_size)
        self._sock.settimeout(None)
        self._sock.sendall(response)
        self._subprotocol = subprotocol
        self._session = session
        self._state = _OPEN
        log.debug("accepted WebSocket %s", self.path)
        if self._buffered:
            data, self._buffered = self._buffered, b""
            with self._lock:
                session.receive_data(data)
                self._write_pending()

    def _open_session(self) -> Session:
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
        return self._receive_blocking(session, timeout)

    def _receive_blocking(self, session: Session, timeout: float | None) -> Message | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reader.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise TimeoutError("another receive() is still waiting")
        try:
            messages = session.messages
            while not messages:
                if session.receive_done:
                    self.flush()
                    self._end_of_messages(session)
                    return None
                self._read_once(session, deadline)
            self.messages_received += 1
            return messages.popleft()
        finally:
            self._reader.release()

    def _read_once(self, session: Session, deadline: float | None) -> None:
        """Flush what is queued, wait for bytes, feed them to the protocol (reader lock held)."""
        self.flush()
        sock = self._sock
        try:
            if deadline is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.0))
            data = sock.recv(READ_SIZE)
        except TimeoutError:
            raise TimeoutError("no message within the receive timeout") from None
        except OSError:
            data = b""
        finally:
            if deadline is not None:
                with contextlib.suppress(OSError):
                    sock.settimeout(None)
        with self._lock:
            if data:
                session.receive_data(data)
            else:
                session.receive_eof()
            self._write_pending()

    def _end_of_messages(self, session: Session) -> None:
        """Allow one None to mark the end; raise ConnectionClosed on any later receive."""
        if self._none_returned:
            raise session.closed_error()
        self._none_returned = True

    def __iter__(self) -> Iterator[Message]:
        """Yield messages until the connection closes."""
        receive = self.receive
        while True:
            message = receive()
            if message is None:
                return
            yield message

    # Sending.

    def send(self, message: Message | bytearray | memoryview, binary: bool | None = None) -> None:
        """Send one message: ``str`` as a text frame, bytes-like as a binary frame (``binary`` overrides).

        Safe to call from several greenlets or threads at once: frames never interleave.
        Raises :class:`ConnectionClosed` once the connection is closing or closed.
        """
        session = self._session or self._open_session()
        with self._lock:
            session.send_message(message, binary)
            self.messages_sent += 1
            if self._defer is not None and session.messages:
                self._corked += len(message)
                if self._corked < CORK_LIMIT:
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        self._defer(self._deferred_flush)
                    return
            if not self._write_pending():
                raise session.closed_error()

    def ping(self, data: bytes = b"") -> None:
        """Send a ping frame now (the peer answers with a pong)."""
        session = self._session or self._open_session()
        with self._lock:
            session.send_ping(data)
            self._write_pending()

    def flush(self) -> None:
        """Write every queued frame now."""
        if self._session is not None:
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
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            if data:
                self._sock.sendall(data)
            if eof:
                self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._session.receive_eof()
            return False
        return True

    # Closing.

    def close(self, code: int = 1000, reason: str | bytes = "") -> None:
        """Close with ``code`` and ``reason``; wait at most ``close_timeout`` seconds for the peer's close frame.

        Messages that arrive meanwhile are discarded. A no-op when already closed.
        """
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8")
        session = self._session or self._open_session()
        with self._lock:
            session.send_close(code, reason)
            self._write_pending()
        self._await_peer_close(session, self._options.close_timeout)
        session.messages.clear()

    def _await_peer_close(self, session: Session, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if session.receive_done:
            return
        if not self._reader.acquire(timeout=timeout):
            self._abort()  # the holder's recv() wakes up with EOF
            return
        try:
            while not session.receive_done:
                if time.monotonic() >= deadline:
                    log.info("WebSocket %s: no close frame from the peer within %.1f s; closing TCP", self.path, timeout)
                    self._abort()
                    with self._lock:
                        session.receive_eof()
                    return
                try:
                    self._read_once(session, deadline)
                except TimeoutError:
                    continue
        finally:
            self._reader.release()

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def finish(self, error: BaseException | None = None) -> None:
        """End the connection after the handler returned (or raised ``error``): close frame, then TCP.

        Called by the server glue, never by handlers.
        """
        if self._state is not _OPEN:
            return
        session = self._session
        assert session is not None
        try:
            if error is not None:
                log.error("WebSocket handler for %s raised; closing with 1011", self.path, exc_info=error)
                if session.is_open:
                    self.close(CloseCode.INTERNAL_ERROR, "internal server error")
            elif session.is_open:
                self.close()
            elif not session.receive_done:
                self._await_peer_close(session, self._options.close_timeout)
            self.flush()
        except (ConnectionClosed, OSError):
            pass
        finally:
            self._state = _FINISHED
            self._teardown()

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
            sock.close()
