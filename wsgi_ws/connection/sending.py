"""Writing to one socket without waiting for ever: one send that never waits, then bounded waits for room.

The fast path is a single send that never waits (the socket's own non-blocking ``send``, or ``MSG_DONTWAIT``): a
write the socket takes whole costs what it always did, with no timeout set or cleared. Only past a partial send does
the writer wait for room, at most ``timeout`` seconds each time (the connection's ``send_timeout`` unless the caller
gives its own); a wait that sees no room for that long raises ``TimeoutError``, which
:meth:`~wsgi_ws.connection.transport.Transport.write_pending` turns into a cut connection (1006, logged as
``ws.timeout``). So a client that never reads pins a writer for ``send_timeout`` at most.

The waits never change the socket's timeout, which a reader in another greenlet or thread may be relying on: under
gevent the writer waits on the socket's write watcher, under threads in ``poll``. The exception is TLS under threads,
whose send cannot be made non-blocking: there the socket's timeout is set for the write.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import select
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from ..options import WebSocketOptions
from .roles import Logged

__all__ = ["JOIN_LIMIT", "Owner", "SendNow", "Writable", "Write", "nonblocking_send", "send_chunks", "writer_for"]

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
#: Queued chunks up to this size are joined into one write; a larger chunk is written from its own buffer.
JOIN_LIMIT = 64 * 1024
#: A send that never waits: ``send(data, flags)``; returns the bytes taken, raises ``BlockingIOError`` for none.
SendNow = Callable[[bytes | memoryview, int], int]
_WOULD_BLOCK = (BlockingIOError, InterruptedError, TimeoutError)  # TimeoutError: a thread's reader set a timeout


class Owner(Logged, Protocol):
    """The connection a transport serves (a ``WebSocket``): its options, and its names for the log."""

    @property
    def options(self) -> WebSocketOptions:
        """The connection's options (``send_timeout`` among them)."""


class Writable(Protocol):
    """What a writer needs of a transport."""

    sock: socket.socket
    send_now: SendNow | None
    bytes_sent: int

    @property
    def send_timeout(self) -> float | None:
        """Seconds a write may wait for room without progress (None: for ever)."""


#: A writer: ``write(transport, data, timeout)`` writes all of ``data`` or raises (``TimeoutError``: no progress for
#: ``timeout`` seconds, or the transport's ``send_timeout`` when ``timeout`` is None; any other ``OSError``: broken).
Write = Callable[[Writable, bytes | memoryview, float | None], None]


def writer_for(sock: socket.socket, send_now: SendNow | None) -> Write:
    """The writer that suits ``sock`` (``send_now`` is what :func:`nonblocking_send` gave for it)."""
    if send_now is not None:
        return _send_plain
    if type(sock).__module__.startswith("gevent") and hasattr(sock, "_sslobj"):  # gevent's TLS socket
        return _send_tls_gevent
    return _send_blocking


def _send_plain(transport: Writable, data: bytes | memoryview, timeout: float | None) -> None:
    """A plain socket: one send that never waits; past a partial one, wait for room (bounded) and send the rest."""
    send = transport.send_now
    assert send is not None
    transport.bytes_sent += len(data)
    try:
        sent = send(data, _DONTWAIT)
    except _WOULD_BLOCK:
        sent = 0
    if sent == len(data):
        return
    sock = transport.sock
    limit = _limit(transport, timeout)
    wait = _wait_gevent if type(sock).__module__.startswith("gevent") else _wait_poll
    view = memoryview(data)
    while sent < len(view):
        wait(sock, limit)
        with contextlib.suppress(*_WOULD_BLOCK):  # woken without room after all: wait again
            sent += send(view[sent:], _DONTWAIT)


def _send_tls_gevent(transport: Writable, data: bytes | memoryview, timeout: float | None) -> None:
    """gevent's TLS socket: its SSL object writes without waiting (the socket under it never blocks); waits are bounded."""
    sock: Any = transport.sock
    transport.bytes_sent += len(data)
    while True:
        sslobj = sock._sslobj
        if sslobj is None:
            raise OSError(errno.EBADF, "the TLS socket was closed")
        try:
            sslobj.write(data)  # all or nothing; after a want, retried with the same bytes, as OpenSSL requires
            return
        except ssl.SSLWantWriteError:
            _wait_gevent(sock, _limit(transport, timeout))
        except ssl.SSLWantReadError:  # renegotiation: rare; a watcher of its own, as the reader may be waiting on the socket's
            from gevent.socket import wait_read

            wait_read(sock.fileno(), _limit(transport, timeout))


def _send_blocking(transport: Writable, data: bytes | memoryview, timeout: float | None) -> None:
    """A socket with no send that never waits (TLS under threads): the socket's timeout bounds each send."""
    sock = transport.sock
    transport.bytes_sent += len(data)
    limit = _limit(transport, timeout)
    if limit is not None:
        sock.settimeout(limit)
    try:
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += sock.send(view[sent:])
            except TimeoutError:
                if limit is not None:
                    raise
                # No limit of ours: a reader's deadline put the socket in timeout mode meanwhile; send again.
    finally:
        if limit is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(None)


def _limit(transport: Writable, timeout: float | None) -> float | None:
    """The seconds a wait for room may last: the caller's ``timeout``, else the transport's ``send_timeout``."""
    return transport.send_timeout if timeout is None else timeout


def _wait_gevent(sock: Any, limit: float | None) -> None:
    """Wait until a gevent socket has room, at most ``limit`` seconds (``TimeoutError`` after that)."""
    from gevent.socket import wait

    watcher = sock._write_event  # the socket's own: closing the socket wakes its waiter
    if watcher is None:
        raise OSError(errno.EBADF, "the socket was closed")
    wait(watcher, limit)


def _wait_poll(sock: socket.socket, limit: float | None) -> None:
    """Wait until a socket has room, at most ``limit`` seconds (``TimeoutError`` after that); its timeout is left alone."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if not poller.poll(None if limit is None else limit * 1000):
        raise TimeoutError(f"no room to write for {limit} s")


def nonblocking_send(sock: socket.socket) -> tuple[SendNow | None, bool]:
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


def send_chunks(write: Write, transport: Writable, chunks: list[bytes], timeout: float | None) -> None:
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
        write(transport, b"".join(pending), timeout)
        write(transport, view[JOIN_LIMIT:], timeout)
        pending = []
    data = b"".join(pending)
    if data:
        write(transport, data, timeout)
