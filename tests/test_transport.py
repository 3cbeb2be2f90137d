"""One socket shared by many callers, over a socketpair with real threads: one reader at a time, corked writes, and
writes bounded by ``send_timeout`` (connection/sending.py) for a client that never reads."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.constants import TIMEOUT
from tests.hubkit import KEY, Setup
from tests.wsclient import OP_CLOSE, OP_TEXT, close_payload, encode_frame
from wsgi_ws.connection.transport import Transport
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.exceptions import ConnectionClosed, ConnectionClosedError
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest
from wsgi_ws.protocol.session import Session
from wsgi_ws.protocol.state import ConnectionState, Event, Lifecycle

pytestmark = pytest.mark.socket


@pytest.fixture
def transport() -> Iterator[tuple[Transport, Session, socket.socket, list[Callable[[], None]]]]:
    server, client = socket.socketpair()
    client.settimeout(TIMEOUT)
    lifecycle = Lifecycle()
    lifecycle.handle(Event.ACCEPT)
    deferred: list[Callable[[], None]] = []
    transport = Transport(server, lifecycle, deferred.append)
    transport.session = session = Session(None)
    yield transport, session, client, deferred
    server.close()
    client.close()


def test_a_second_caller_waits_for_the_reader_and_sees_what_it_read(
    transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]],
) -> None:
    transport_, session, client, _ = transport
    assembler = session.assembler
    results: list[bool] = []
    readers = [threading.Thread(target=lambda: results.append(transport_.wait_for(session, assembler.waiting, None))) for _ in range(2)]
    for reader in readers:
        reader.start()
    client.sendall(encode_frame(OP_TEXT, b"one"))
    for reader in readers:
        reader.join(TIMEOUT)
    assert results == [True, True], "both callers saw the message; only one of them read the socket"
    assert assembler.pop_message() == "one" and transport_.reads >= 1


def test_a_wait_with_a_deadline_raises_timeout(transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]]) -> None:
    transport_, session, _, _ = transport
    with pytest.raises(TimeoutError):
        transport_.wait_for(session, session.assembler.waiting, 0.0)


def test_writes_are_corked_while_messages_wait_and_flushed_by_the_deferred_call(
    transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]],
) -> None:
    transport_, session, client, deferred = transport
    session.receive_data(encode_frame(OP_TEXT, b"unread"))
    with transport_.lock:
        session.send_message("reply")
        assert transport_.corking and transport_.cork(5)
    assert len(deferred) == 1 and transport_.bytes_sent == 0
    deferred.pop()()
    assert client.recv(100) == b"\x81\x05reply" and transport_.bytes_sent == 7


def test_a_close_from_the_peer_moves_the_lifecycle_to_closing(
    transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]],
) -> None:
    transport_, session, client, _ = transport
    client.sendall(encode_frame(OP_CLOSE, close_payload(1000)))
    assert not transport_.wait_for(session, session.assembler.waiting, None)
    assert transport_.lifecycle.state is ConnectionState.CLOSING
    assert client.recv(100) == b"\x88\x02\x03\xe8", "the close is answered at once"


def test_write_now_never_blocks_on_a_full_socket(transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]]) -> None:
    transport_, _, _, _ = transport
    for _ in range(200):  # far more than the socket buffers hold; the client never reads
        transport_.write_now(b"x" * 65536)


def test_linger_and_close_waits_for_the_peers_fin(transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]]) -> None:
    transport_, _, client, _ = transport
    client.shutdown(socket.SHUT_WR)
    transport_.linger_and_close(TIMEOUT, close_socket=True)
    assert transport_.sock.fileno() == -1
    assert client.recv(1) == b"", "the server half-closed too"


def test_a_ping_goes_out_at_once_unless_someone_else_is_writing(
    transport: tuple[Transport, Session, socket.socket, list[Callable[[], None]]],
) -> None:
    ours, session, client, _ = transport
    frame = b"\x89\x0akeep-alive"
    assert ours.ping_now(frame)
    client.settimeout(TIMEOUT)
    assert client.recv(100) == frame
    with ours.lock:  # a writer is mid-frame: the monitor must not write between its bytes
        assert not ours.ping_now(frame)
    session.send_message("queued")
    assert not ours.ping_now(frame), "frames of ours wait to be written first"


# A client that never reads: every write waits at most send_timeout for progress, then TCP is cut (1006).

STALLED = "the client read nothing for 0.2 s"


class CountingSocket(socket.socket):
    """A socket that counts the changes to its timeout (the fast path and the waits must make none)."""

    settimeouts = 0

    def settimeout(self, value: float | None) -> None:
        self.settimeouts += 1
        super().settimeout(value)


@pytest.fixture
def stuck() -> Iterator[tuple[WebSocket, CountingSocket]]:
    """An accepted WebSocket (send_timeout 0.2 s) whose client never reads, over small socket buffers."""
    server, client = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    counting = CountingSocket(fileno=server.detach())
    request = HandshakeRequest(key=KEY, origin=None, subprotocols=(), extensions=())
    environ = {"PATH_INFO": "/stuck", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "4242"}
    ws = WebSocket(counting, environ, request, WebSocketOptions(send_timeout=0.2))
    ws.accept()
    counting.settimeouts = 0  # the accept's own
    yield ws, counting
    counting.close()
    client.close()


def fill(sock: socket.socket) -> None:
    """Write to ``sock`` without waiting until its buffers are full."""
    while True:
        try:
            sock.send(b"x" * 65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


def assert_cut_once(ws: WebSocket, caplog: pytest.LogCaptureFixture) -> None:
    assert (ws.close_code, ws.close_reason, ws.closed) == (1006, STALLED, True)
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("ws.timeout")]
    assert lines == [f"ws.timeout path=/stuck peer=127.0.0.1:4242: {STALLED}; closing TCP (1006)"]
    assert all(
        record.levelno == logging.INFO and record.exc_info is None for record in caplog.records if "ws.timeout" in record.getMessage()
    )


@pytest.mark.timeout(30)
def test_sends_to_a_client_that_never_reads_are_cut_after_send_timeout(
    stuck: tuple[WebSocket, CountingSocket], caplog: pytest.LogCaptureFixture
) -> None:
    ws, sock = stuck
    caplog.set_level(logging.INFO, "wsgi_ws")
    started = time.monotonic()
    sent = 0
    with pytest.raises(ConnectionClosedError) as raised:
        while True:
            ws.send(b"x" * 1000)
            sent += 1
    assert 0.2 <= time.monotonic() - started < TIMEOUT and sent > 0, "the fast path took what fitted; then one bounded wait"
    assert (raised.value.close_code, raised.value.close_reason) == (1006, STALLED)
    assert sock.settimeouts == 0, "neither the fast path nor the wait touched the socket's timeout"
    with pytest.raises(ConnectionClosed):
        ws.send("later")
    ws.close()  # a no-op now
    ws.end()
    assert_cut_once(ws, caplog)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("action", ["close", "ping"])
def test_a_close_frame_or_a_ping_to_a_full_socket_is_bounded_too(
    stuck: tuple[WebSocket, CountingSocket], caplog: pytest.LogCaptureFixture, action: str
) -> None:
    ws, sock = stuck
    caplog.set_level(logging.INFO, "wsgi_ws")
    fill(sock)
    started = time.monotonic()
    if action == "close":
        ws.close(1000, "bye")  # the close frame finds no room; no wait for the peer's answer follows
    else:
        ws.ping(b"keep-alive")  # as the keep-alive monitor's greenlet sends it
    assert time.monotonic() - started < TIMEOUT
    assert_cut_once(ws, caplog)


@pytest.mark.timeout(30)
def test_a_hub_writer_for_a_member_that_never_reads_is_bounded(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "wsgi_ws")
    member, _peer = setup.connect(buffer=4096, hub_overflow="latest", send_timeout=0.2)  # latest: never closed as too slow
    setup.hub.join(member, "lobby")
    for number in range(50):
        setup.hub.publish("lobby", f"{number:06d}" + "x" * 2000)
        while setup.passes:
            setup.passes.pop(0)()
    setup.spawn.run_all()  # the writer greenlet: its write waits 0.2 s for a reader, then the connection is cut
    assert (member.close_code, member.close_reason) == (1006, STALLED)
    assert sum("ws.timeout path=/hub" in record.getMessage() for record in caplog.records) == 1


@dataclass
class Owner:
    """The connection a bare Transport serves (a WebSocket elsewhere)."""

    options: WebSocketOptions
    path: str = "/tls"
    peer: str = "127.0.0.1:4242"


@pytest.mark.timeout(30)
def test_tls_under_threads_is_bounded_by_the_sockets_timeout(certificate: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "wsgi_ws")
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    plain, peer = socket.socketpair()
    plain.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client_side = ssl.create_default_context(cafile=cert)
    clients: list[ssl.SSLSocket] = []
    client = threading.Thread(target=lambda: clients.append(client_side.wrap_socket(peer, server_hostname="127.0.0.1")))
    client.start()  # the client's end of the handshake; it then reads nothing
    with server_side.wrap_socket(plain, server_side=True) as sock:
        client.join(TIMEOUT)
        lifecycle = Lifecycle()
        lifecycle.handle(Event.ACCEPT)
        transport = Transport(sock, lifecycle, None, Owner(WebSocketOptions(send_timeout=0.2)))
        transport.session = session = Session(None)
        assert transport.send_now is None, "TLS: no send that never waits under threads"
        started = time.monotonic()
        with transport.lock:
            while session.is_open:
                session.send_message(b"x" * 65536)
                if not transport.write_pending():
                    break
        assert time.monotonic() - started < TIMEOUT
        assert lifecycle.aborted == (1006, STALLED) and sock.gettimeout() is None, "the socket's timeout is back to none"
    clients[0].close()
    assert [r.getMessage() for r in caplog.records if "ws.timeout" in r.getMessage()] == [
        f"ws.timeout path=/tls peer=127.0.0.1:4242: {STALLED}; closing TCP (1006)"
    ]


# Reads under gevent: one buffer shared by the process, only what arrived copied out (bench/soak.py: RSS flat).


@pytest.mark.timeout(30)
def test_greenlets_reading_at_once_through_the_shared_buffer_each_get_their_own_bytes() -> None:
    import gevent
    from gevent import socket as gevent_socket

    from wsgi_ws.connection.transport import READ_SIZE, read_shared, reads_into_shared_buffer

    pairs = [gevent_socket.socketpair() for _ in range(20)]
    try:
        payloads = [bytes([n]) * (1 + n * 9973 % (3 * READ_SIZE)) for n in range(len(pairs))]

        def read_all(sock: socket.socket, expected: int) -> bytes:
            assert reads_into_shared_buffer(sock)
            got = bytearray()
            while len(got) < expected:
                chunk = read_shared(sock, READ_SIZE)
                assert chunk, "EOF before everything arrived"
                got += chunk
            return bytes(got)

        readers = [gevent.spawn(read_all, server, len(payload)) for (server, _), payload in zip(pairs, payloads, strict=True)]
        writers = [gevent.spawn(client.sendall, payload) for (_, client), payload in zip(pairs, payloads, strict=True)]
        gevent.joinall(writers + readers, timeout=TIMEOUT, raise_error=True)
        assert [reader.value for reader in readers] == payloads
    finally:
        for server, client in pairs:
            server.close()
            client.close()


def test_a_read_larger_than_the_shared_buffer_goes_around_it_and_plain_sockets_keep_recv() -> None:
    import gevent
    from gevent import socket as gevent_socket

    from wsgi_ws.connection.transport import READ_SIZE, read_shared, reads_into_shared_buffer

    server, client = gevent_socket.socketpair()
    plain_server, plain_client = socket.socketpair()
    try:
        data = b"x" * (3 * READ_SIZE)
        writer = gevent.spawn(client.sendall, data)
        got = b""
        while len(got) < len(data):
            got += read_shared(server, 2 * READ_SIZE)
        assert got == data
        writer.join(TIMEOUT)
        assert not reads_into_shared_buffer(plain_server)  # threads keep the socket's own recv (they may yield mid-read)
    finally:
        for sock in (server, client, plain_server, plain_client):
            sock.close()
