"""One socket shared by many callers, over a socketpair with real threads: one reader at a time, corked writes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.constants import TIMEOUT
from tests.wsclient import OP_CLOSE, OP_TEXT, close_payload, encode_frame
from wsgi_ws.connection.transport import Transport
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
