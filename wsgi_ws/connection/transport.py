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

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

from ..protocol.session import CloseCode, Session
from ..protocol.state import ConnectionState, Event, Lifecycle
from .sending import JOIN_LIMIT, Owner, nonblocking_send, send_chunks, writer_for

__all__ = ["CORK_LIMIT", "JOIN_LIMIT", "READ_SIZE", "Transport", "read_shared", "reads_into_shared_buffer"]

log = logging.getLogger("wsgi_ws")

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

#: Bytes asked of the socket per read (while not streaming).
READ_SIZE = 256 * 1024
#: Queued output above which a send is flushed even while corked.
CORK_LIMIT = 64 * 1024

_Defer = Callable[[Callable[[], None]], object]  # runs a callable at the event loop's next turn


class Transport:
    """The socket of one accepted connection, shared safely by the handler, background writers and keep-alive.

    ``session`` is None until the connection is accepted. ``lock`` guards the session and socket writes; hold it
    when calling :meth:`write_pending`. Every method may be called from any greenlet or thread. ``owner``, the
    connection served, gives the ``send_timeout`` that bounds every write (connection/sending.py).
    """

    __slots__ = (
        "_arrivals",
        "_corked",
        "_defer",
        "_flush_scheduled",
        "_reader",
        "_reads",
        "_send_now_if_blocking",
        "_shared_reads",
        "_waiting",
        "_write",
        "bytes_received",
        "bytes_sent",
        "corking",
        "keep_alive_busy",
        "last_received",
        "lifecycle",
        "lock",
        "owner",
        "ping_sent_at",
        "read_size",
        "send_now",
        "session",
        "sock",
    )

    def __init__(self, sock: socket.socket, lifecycle: Lifecycle, defer: _Defer | None, owner: Owner | None = None) -> None:
        self.sock = sock
        self.owner = owner
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
        #: A send that never waits (None for TLS), for broadcasts (:meth:`try_write`) and the writer's fast path.
        self.send_now, self._send_now_if_blocking = nonblocking_send(sock)
        self._write = writer_for(sock, self.send_now)
        self._shared_reads = reads_into_shared_buffer(sock)

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
            data = read_shared(sock, self.read_size) if self._shared_reads else sock.recv(self.read_size)
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

    @property
    def send_timeout(self) -> float | None:
        """Seconds a write may wait without progress: the owner's ``send_timeout`` (None, for ever, without an owner)."""
        return None if self.owner is None else self.owner.options.send_timeout

    def write_pending(self, timeout: float | None = None) -> bool:
        """Write what the session has queued, in order (``lock`` held); False if the socket broke.

        A write that makes no progress for ``timeout`` seconds (by default :attr:`send_timeout`) cuts the
        connection: the client reads nothing. It closes with 1006 and a reason, logged once as ``ws.timeout``.
        """
        session = self.session
        if session is None:  # nothing was ever accepted on this socket
            return True
        chunks = session.data_to_send()
        self._corked = 0
        if not chunks:
            return True
        try:
            if len(chunks) == 1:
                if chunks[0]:
                    self._write(self, chunks[0], timeout)
            else:
                send_chunks(self._write, self, chunks, timeout)
            if not chunks[-1]:
                self.sock.shutdown(socket.SHUT_WR)
        except TimeoutError:
            _stalled(self, self.send_timeout if timeout is None else timeout)
            self._broken(session)
            return False
        except OSError:
            self._broken(session)
            return False
        return True

    def try_write(self, data: bytes) -> int:
        """Write what the socket takes of ``data`` at once, never waiting; return how many bytes that was.

        For a broadcast: call it with ``lock`` held and only when the session is
        :meth:`~wsgi_ws.protocol.session.Session.writable_now`, and queue what was not written, before anything
        else, with :meth:`~wsgi_ws.protocol.session.Session.send_frames`. 0 where the socket cannot write without
        waiting (TLS, a socket in timeout mode); -1 when the socket broke (the session has then seen EOF).
        """
        send = self.send_now
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


#: Under gevent, every read of the process lands here first (see :func:`reads_into_shared_buffer`).
_SHARED_READ_BUFFER = memoryview(bytearray(READ_SIZE))


def reads_into_shared_buffer(sock: socket.socket) -> bool:
    """Whether reads of ``sock`` go through :func:`read_shared`: under gevent, yes; threads keep ``sock.recv``.

    A ``sock.recv(256 KiB)`` has malloc hand out 256 KiB and shrink it to what arrived, thousands of times a second,
    which leaves glibc's heap riddled with small live objects: RSS grew 20% over a 10-minute soak (bench/soak.py) and
    stayed up. Sharing one buffer is safe because a greenlet never yields between the system call that fills it and
    the copy out; a thread could.
    """
    return type(sock).__module__.startswith("gevent")


def read_shared(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)`` through the process's read buffer: only the bytes read are copied out (gevent only)."""
    shared = _SHARED_READ_BUFFER
    if size > len(shared):
        return sock.recv(size)
    received = sock.recv_into(shared, size)
    return shared[:received].tobytes()


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


def _stalled(transport: Transport, seconds: float | None) -> None:
    """A write made no progress for ``seconds``: the client reads nothing. Abort with 1006 (logged once) and cut TCP."""
    reason = f"the client read nothing for {seconds or 0:.1f} s"
    if transport.lifecycle.abort(CloseCode.ABNORMAL_CLOSURE, reason):
        owner = transport.owner
        path, peer = (owner.path, owner.peer) if owner is not None else ("-", "-")
        log.info("ws.timeout path=%s peer=%s: %s; closing TCP (1006)", path, peer, reason)
    transport.cut()
