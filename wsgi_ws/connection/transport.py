"""One connection's socket I/O: read coordination and the corked writer, the same under greenlets and threads.

Reading: no reader greenlet sits between the socket and the handler. Whoever needs data (``receive``,
``receive_partial``, ``wait_closed``, ``close`` waiting for the peer, the keep-alive check) reads the socket itself if
nobody else is reading (:meth:`Transport.wait_for`), and otherwise waits until the current reader has fed what it read
to the session. Messages are never lost between several callers.

Writing is corked: a reply sent while the handler still has received messages to process is queued, and everything
queued goes out in one write when the handler is about to block, when enough is queued, or at the next turn of the
event loop (:meth:`Transport.cork`); a send with nothing left to process goes out at once. So a burst of
messages parsed from one read is answered with one write, and a background writer is never delayed.
"""

from __future__ import annotations

import _socket
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

from ..protocol.session import Session
from ..protocol.state import ConnectionState, Event, Lifecycle

__all__ = ["CORK_LIMIT", "JOIN_LIMIT", "READ_SIZE", "Transport"]

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

#: Bytes asked of the socket per read (while not streaming).
READ_SIZE = 256 * 1024
#: Queued output above which a send is flushed even while corked.
CORK_LIMIT = 64 * 1024
#: Queued chunks up to this size are joined into one write; a larger chunk is written from its own buffer.
JOIN_LIMIT = 64 * 1024


class Transport:
    """The socket of one accepted connection, shared safely by the handler, background writers and keep-alive.

    ``session`` is None until the connection is accepted. ``lock`` guards the session and socket writes; hold it
    when calling :meth:`write_pending`. Every method may be called from any greenlet or thread.
    """

    __slots__ = (
        "_arrivals",
        "_corked",
        "_defer",
        "_flush_scheduled",
        "_reader",
        "_reads",
        "_send_now",
        "_send_now_if_blocking",
        "_waiting",
        "bytes_received",
        "bytes_sent",
        "corking",
        "keep_alive_busy",
        "last_received",
        "lifecycle",
        "lock",
        "ping_sent_at",
        "read_size",
        "session",
        "sock",
    )

    def __init__(self, sock: socket.socket, lifecycle: Lifecycle, defer: Callable[[Callable[[], None]], object] | None) -> None:
        self.sock = sock
        self.lifecycle = lifecycle
        self.session: Session | None = None
        self._defer = defer  # runs a callable at the next turn of the event loop
        #: True when writes may be corked (the server gave a ``defer``; under threads they never are).
        self.corking = defer is not None
        self.lock = threading.Lock()
        self._reader = threading.Lock()  # held by whoever is reading the socket
        self._arrivals: threading.Condition | None = None  # signalled after every read; made when first waited on
        self._reads = 0  # reads finished so far; waiters compare it to know a read happened
        self._waiting = 0  # callers waiting in _arrivals
        #: Bytes asked of the socket per read.
        self.read_size = READ_SIZE
        self._corked = 0
        self._flush_scheduled = False
        #: Bytes each way, for logs and metrics.
        self.bytes_received = self.bytes_sent = 0
        #: Monotonic time of the last bytes received (keep-alive).
        self.last_received = time.monotonic()
        #: Monotonic time of the unanswered keep-alive ping, or None.
        self.ping_sent_at: float | None = None
        #: True while a keep-alive action for this connection is under way.
        self.keep_alive_busy = False
        self._send_now, self._send_now_if_blocking = _nonblocking_send(sock)

    # Reading.

    def wait_for(self, session: Session, ready: Callable[[], object], deadline: float | None) -> bool:
        """Read, or wait for the reader, until ``ready()``; False if nothing more can be received.

        Raises ``TimeoutError`` at ``deadline`` (monotonic seconds; None waits for ever).
        """
        while not ready():
            if session.receive_done or self.lifecycle.aborted is not None:
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
                self.wait_arrival(seen, deadline)
        return True

    @property
    def reads(self) -> int:
        """How many reads have finished so far (pass it to :meth:`wait_arrival`)."""
        return self._reads

    def wait_arrival(self, seen: int, deadline: float | None) -> None:
        """Wait until a read finishes after ``seen`` reads (raises TimeoutError at ``deadline``)."""
        if self._arrivals is None:
            with self.lock:
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

    def read_ahead(self) -> None:
        """Read once without blocking if nobody else is reading (the keep-alive check looks for unread pongs)."""
        session = self.session
        if session is not None and self._reader.acquire(blocking=False):
            try:
                self._read_once(session, None, wait=False)
            finally:
                self._reader.release()
                self._read_done()

    def _read_done(self) -> None:
        self._reads += 1
        arrivals = self._arrivals
        if self._waiting and arrivals is not None:
            with arrivals:
                arrivals.notify_all()

    def _read_once(self, session: Session, deadline: float | None, wait: bool = True) -> None:
        """Flush what is queued, read once, feed the session (the reader lock is held)."""
        self.flush()
        sock = self.sock
        try:
            if not wait:
                sock.settimeout(0.0)
            elif deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # a timeout of 0 would make the socket non-blocking, not raise
                    raise TimeoutError
                sock.settimeout(remaining)
            data = sock.recv(self.read_size)
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
        with self.lock:
            if data:
                self.last_received = time.monotonic()
                self.ping_sent_at = None
                session.receive_data(data)
            else:
                session.receive_eof()
            if session.has_output():
                self.write_pending()
            self.note_closing()

    def note_closing(self) -> None:
        """Move the lifecycle to CLOSING once the session has stopped receiving or sent its close frame."""
        session = self.session
        if session is not None and (session.receive_done or not session.is_open):
            self.lifecycle.handle(Event.CLOSE_STARTED)

    # Writing.

    def cork(self, size: int) -> bool:
        """Leave ``size`` bytes just queued to a flush at the event loop's next turn; False when enough is queued to write now.

        Only when :attr:`corking` (the server gave a ``defer``); the caller writes with :meth:`write_pending` on False.
        """
        assert self._defer is not None
        self._corked += size
        if self._corked >= CORK_LIMIT:
            return False
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._defer(self._deferred_flush)
        return True

    def flush(self) -> None:
        """Write every queued frame now."""
        session = self.session
        if session is not None and session.has_output():
            with self.lock:
                self.write_pending()

    def _deferred_flush(self) -> None:
        self._flush_scheduled = False
        if self.lifecycle.state is not ConnectionState.CLOSED:
            self.flush()

    def write_pending(self, timeout: float | None = None) -> bool:
        """Write what the session has queued, in order (``lock`` held); False if the socket broke.

        With ``timeout``, a write that takes longer than ``timeout`` seconds counts as a broken socket.
        """
        session = self.session
        if session is None:  # nothing was ever accepted on this socket
            return True
        chunks = session.data_to_send()
        self._corked = 0
        if not chunks:
            return True
        eof = not chunks[-1]
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            if len(chunks) == 1:
                if chunks[0]:
                    self._send_all(chunks[0])
            else:
                _send_chunks(self._send_all, chunks)
            if eof:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._broken(session)
            return False
        finally:
            if timeout is not None:
                with contextlib.suppress(OSError):
                    self.sock.settimeout(None)
        return True

    def try_write(self, data: bytes) -> int:
        """Write what the socket takes of ``data`` at once, never waiting; return how many bytes that was.

        For a broadcast: call it with ``lock`` held and only when the session is
        :meth:`~wsgi_ws.protocol.session.Session.writable_now`, and queue what was not written, before anything
        else, with :meth:`~wsgi_ws.protocol.session.Session.send_frames`. 0 where the socket cannot write without
        waiting (TLS, a socket in timeout mode); -1 when the socket broke (the session has then seen EOF).
        """
        send = self._send_now
        if send is None or (self._send_now_if_blocking and self.sock.gettimeout() is not None):
            return 0
        try:
            sent: int = send(data, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            if self.session is not None:
                self._broken(self.session)
            return -1
        self.bytes_sent += sent
        return sent

    def ping_now(self, frame: bytes) -> bool:
        """Write control ``frame`` now if nobody else writes and the socket takes it whole (a part taken: rest queued); else False."""
        if not self.lock.acquire(False):
            return False
        try:
            session = self.session
            if session is None or not session.writable_now():
                return False
            if 0 < (sent := self.try_write(frame)) < len(frame):
                session.send_frames([frame[sent:]])
            return sent == len(frame)
        finally:
            self.lock.release()

    def _broken(self, session: Session) -> None:
        session.receive_eof()
        self.note_closing()

    def write_now(self, data: bytes) -> None:
        """Offer ``data`` to the socket without blocking (an abort's close frame); what does not fit is dropped."""
        self.sock.settimeout(0.0)
        try:
            self.sock.send(data)
        except OSError:
            pass
        finally:
            self.sock.settimeout(None)

    def _send_all(self, data: bytes | memoryview) -> None:
        """Write all of ``data``: ``send`` in a loop (gevent's ``sendall`` asks ``getsockopt`` on every call)."""
        send = self.sock.send
        self.bytes_sent += len(data)
        sent = send(data)
        if sent < len(data):
            view = memoryview(data)
            while sent < len(view):
                sent += send(view[sent:])

    # Ending.

    def cut(self) -> None:
        """Shut the socket down both ways: every greenlet blocked on it wakes up."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def linger_and_close(self, timeout: float, close_socket: bool) -> None:
        """Half-close, wait up to ``timeout`` s for the peer's FIN so no RST eats our close frame, then close.

        With ``close_socket`` False the server closes the socket itself: it is only cut, so the server's reader sees EOF.
        """
        _linger(self.sock, timeout)
        if close_socket:
            self.sock.close()
        else:
            self.cut()


def _nonblocking_send(sock: socket.socket) -> tuple[Callable[[bytes, int], int] | None, bool]:
    """A send of ``sock`` that never waits, and whether it may be used only while ``sock`` is in blocking mode.

    gevent's cooperative socket wraps a non-blocking one, whose ``send`` is used directly; a plain socket sends with
    ``MSG_DONTWAIT`` (honoured only while it has no timeout). None for TLS, or where ``MSG_DONTWAIT`` is missing.
    """
    if not _DONTWAIT:
        return None, False
    kind = type(sock)
    if kind.__name__ == "socket" and kind.__module__ == "gevent._socket3":  # gevent's plain socket (its TLS one is another class)
        inner = getattr(sock, "_sock", None)  # skips the hasattr below, which raises inside gevent's __getattr__ (~3 us)
        return (inner.send, False) if isinstance(inner, _socket.socket) else (None, False)
    if isinstance(sock, ssl.SSLSocket) or hasattr(sock, "_sslobj"):
        return None, False
    if kind.__module__.startswith("gevent"):
        inner = getattr(sock, "_sock", None)
        return (inner.send, False) if isinstance(inner, _socket.socket) else (None, False)
    if isinstance(sock, _socket.socket):
        return sock.send, True
    return None, False


def _linger(sock: socket.socket, timeout: float) -> None:
    """Half-close ``sock`` and read until the peer's FIN, at most ``timeout`` seconds."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + timeout
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


def _send_chunks(send_all: Callable[[bytes | memoryview], None], chunks: list[bytes]) -> None:
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
        send_all(b"".join(pending))
        send_all(view[JOIN_LIMIT:])
        pending = []
    data = b"".join(pending)
    if data:
        send_all(data)
