"""The blocking WebSocket over a socketpair, with real threads: accept, receive, send, corking, close, misuse."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.constants import TIMEOUT
from tests.wsclient import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawClient, close_payload, encode_frame
from wsgi_ws.connection.keepalive import ConnectionMonitor
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidArgument, InvalidState, WebSocketError
from wsgi_ws.integrations.handler import finish
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest
from wsgi_ws.protocol.state import ConnectionState

pytestmark = pytest.mark.socket

REQUEST = HandshakeRequest(key="dGhlIHNhbXBsZSBub25jZQ==", origin=None, subprotocols=("b", "a"))


class CountingSocket:
    """A socket that counts its writes (send() and sendall() calls)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes = 0
        self.sizes: list[int] = []  # bytes offered to each write

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        self.sizes.append(len(data))
        self.sock.sendall(data)

    def send(self, data: bytes) -> int:
        self.writes += 1
        self.sizes.append(len(data))
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Peer(RawClient):
    """The client end of the socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        sock.settimeout(TIMEOUT)

    def has_data(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])


@pytest.fixture
def pair() -> Iterator[Callable[..., tuple[WebSocket, Peer, CountingSocket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []

    def make(
        buffered: bytes = b"", defer: Callable[[Callable[[], None]], object] | None = None, **options: Any
    ) -> tuple[WebSocket, Peer, CountingSocket]:
        server, client = socket.socketpair()
        made.append((server, client))
        counting = CountingSocket(server)
        ws = WebSocket(counting, {"PATH_INFO": "/t"}, REQUEST, WebSocketOptions(**options), buffered=buffered, defer=defer)  # type: ignore[arg-type]
        return ws, Peer(client), counting

    yield make
    for server, client in made:
        server.close()
        client.close()


def test_nothing_is_sent_before_accept(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    assert not ws.accepted and not peer.has_data()
    assert ws.subprotocol is None  # no subprotocols configured
    ws.accept("a")
    response = peer.read_response()
    assert response.status == 101 and response.headers["sec-websocket-protocol"] == "a"
    assert ws.subprotocol == "a"


def test_accept_refuses_a_subprotocol_the_client_did_not_offer(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    with pytest.raises(ValueError, match="not offered"):
        ws.accept("c")
    assert not peer.has_data()


def test_implicit_accept_chooses_by_server_preference(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair(subprotocols=("a", "b"))
    assert ws.subprotocol == "a"
    ws.send("x")
    assert peer.read_response().headers["sec-websocket-protocol"] == "a"
    assert peer.read_message() == (OP_TEXT, b"x")


def test_buffered_bytes_are_processed_at_accept(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair(buffered=encode_frame(OP_TEXT, b"early") + encode_frame(OP_PING, b"p"))
    assert ws.receive() == "early"
    peer.read_response()
    pong = peer.read_frame()
    assert pong is not None and (pong.opcode, pong.payload) == (OP_PONG, b"p")


def test_receive_timeout(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    with pytest.raises(TimeoutError):
        ws.receive(timeout=0.05)
    peer.send_frame(OP_BINARY, b"later")
    assert ws.receive(timeout=TIMEOUT) == b"later"


def test_receive_returns_none_once_then_raises(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.send_frame(OP_TEXT, b"last")
    peer.send_frame(OP_CLOSE, close_payload(4000, "bye"))
    assert list(ws) == ["last"]
    assert ws.closed and (ws.close_code, ws.close_reason) == (4000, "bye")
    with pytest.raises(ConnectionClosed) as caught:
        ws.receive()
    assert caught.value.close_code == 4000
    with pytest.raises(ConnectionClosed):
        ws.send("late")


def test_replies_to_a_burst_go_out_in_one_write_when_corked(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    deferred: list[Callable[[], None]] = []
    ws, peer, counting = pair(defer=deferred.append)
    ws.accept()
    peer.read_response()
    peer.send(b"".join(encode_frame(OP_TEXT, str(n).encode()) for n in range(10)))
    writes_before = counting.writes
    for _ in range(10):
        message = ws.receive()
        assert message is not None
        ws.send(message)
    assert counting.writes == writes_before + 1, "nine replies corked, flushed with the tenth"
    assert len(deferred) == 1, "one deferred flush scheduled for the burst"
    assert [peer.read_message()[1] for _ in range(10)] == [str(n).encode() for n in range(10)]


def test_corked_replies_are_flushed_by_the_deferred_callback(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    deferred: list[Callable[[], None]] = []
    ws, peer, _ = pair(defer=deferred.append)
    ws.accept()
    peer.read_response()
    peer.send(encode_frame(OP_TEXT, b"1") + encode_frame(OP_TEXT, b"2"))
    assert ws.receive() == "1"
    ws.send("reply")  # message "2" is still unread: corked
    assert not peer.has_data()
    deferred.pop()()  # the event loop's next turn
    assert peer.read_message() == (OP_TEXT, b"reply")


def test_send_with_nothing_unread_goes_out_at_once(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    deferred: list[Callable[[], None]] = []
    ws, peer, _ = pair(defer=deferred.append)
    ws.accept()
    peer.read_response()
    ws.send(b"now")
    assert deferred == []
    assert peer.read_message() == (OP_BINARY, b"now")


def test_threads_sending_at_once_never_interleave(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.read_response()
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(peer.read_message()[1] for _ in range(8 * 200)))
    reader.start()

    def write(index: int) -> None:
        for number in range(200):
            ws.send(bytes([index]) * (1 + number * 37 % 20000))

    writers = [threading.Thread(target=write, args=(index,)) for index in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(TIMEOUT)
    reader.join(TIMEOUT)
    assert len(received) == 1600
    assert all(len(set(payload)) == 1 for payload in received)


def test_close_waits_for_the_peer_then_returns(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.read_response()

    def answer() -> None:
        frame = peer.read_frame()
        assert frame is not None and frame.opcode == OP_CLOSE
        peer.send_frame(OP_CLOSE, frame.payload)

    responder = threading.Thread(target=answer)
    responder.start()
    ws.close(4100, "server says bye")
    responder.join(TIMEOUT)
    assert ws.close_code == 4100 and ws.close_reason == "server says bye"


def test_close_gives_up_after_close_timeout(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, _peer, _ = pair(close_timeout=0.2)
    ws.accept()
    started = time.monotonic()
    ws.close()
    assert 0.2 <= time.monotonic() - started < TIMEOUT
    assert ws.close_code == 1006


def test_finish_after_handler_error_sends_1011(
    pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]], caplog: pytest.LogCaptureFixture
) -> None:
    ws, peer, _ = pair(close_timeout=0.2)
    ws.accept()
    peer.read_response()
    finish(ws, ConnectionMonitor(lambda *args: None), RuntimeError("handler bug"))
    frame = peer.read_frame()
    assert frame is not None and frame.close_code == 1011
    assert "handler bug" in caplog.text


def test_binary_false_sends_text_and_str_with_binary_true_sends_bytes(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.read_response()
    ws.send(b"as text", binary=False)
    ws.send("as bytes", binary=True)
    assert peer.read_message() == (OP_TEXT, b"as text")
    assert peer.read_message() == (OP_BINARY, b"as bytes")


def test_send_to_vanished_peer_raises_connection_closed(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.sock.close()
    with pytest.raises(ConnectionClosed) as caught:
        for _ in range(1000):
            ws.send(b"x" * 65536)
    assert caught.value.close_code == 1006


def test_a_websocket_has_no_instance_dict(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, _, _ = pair()
    assert not hasattr(ws, "__dict__")  # __slots__: a dict with this many attributes costs ~1.5 KB per connection
    with pytest.raises(AttributeError):
        ws.no_such_attribute = 1  # type: ignore[attr-defined]


def test_a_large_message_is_written_from_its_own_buffer_after_the_small_frames_before_it(
    pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]],
) -> None:
    deferred: list[Callable[[], None]] = []
    ws, peer, counting = pair(defer=deferred.append)
    ws.accept()
    peer.read_response()
    peer.send(encode_frame(OP_TEXT, b"a") + encode_frame(OP_TEXT, b"b"))
    assert ws.receive() == "a"
    ws.send("small")  # corked: "b" is still unread
    big = bytes(range(256)) * 4096  # 1 MiB
    received: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: received.extend(peer.read_message() for _ in range(2)))
    reader.start()
    counting.sizes.clear()
    ws.send(big)  # over the cork limit: flushed now, the small frame first
    reader.join(TIMEOUT)
    assert received == [(OP_TEXT, b"small"), (OP_BINARY, big)]
    # One write carries the small frame, the big frame's 10-byte header and its first 64 KiB (a header never travels
    # alone); the rest of the payload is written from the message itself, not from a joined copy.
    assert counting.sizes[0] == 7 + 10 + 65536
    assert counting.sizes[1] == len(big) - 65536


def test_misuse_raises_errors_of_the_tree(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    with pytest.raises(InvalidArgument, match="not offered"):
        ws.accept("c")
    ws.accept()
    peer.read_response()
    with pytest.raises(InvalidState, match="already accepted"):
        ws.accept()
    with pytest.raises(InvalidState, match="before the WebSocket is accepted"):
        ws.reconfigure(WebSocketOptions())
    with pytest.raises(InvalidArgument, match="125 bytes"):
        ws.ping(b"x" * 126)
    with pytest.raises(InvalidArgument, match="UTF-8"):
        ws.send(b"\xff", binary=False)
    with pytest.raises(InvalidArgument, match="123 bytes"):
        ws.close(1000, "x" * 124)
    with pytest.raises(InvalidArgument, match="invalid close code"):
        ws.close(999)
    for error in (InvalidArgument, InvalidState):
        assert issubclass(error, WebSocketError)


def test_the_lifecycle_moves_through_its_states(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair(close_timeout=0.2)
    states = [ws.state]
    ws.accept()
    peer.read_response()
    states.append(ws.state)
    assert states == [ConnectionState.CONNECTING, ConnectionState.OPEN] and not ws.closed
    peer.send_frame(OP_TEXT, b"unread")
    peer.send_frame(OP_CLOSE, close_payload(4000, "bye"))
    assert ws.receive() == "unread"
    assert ws.state is ConnectionState.CLOSING and ws.closed
    assert ws.receive() is None
    with pytest.raises(ConnectionClosedError) as caught:
        ws.receive()
    assert caught.value.rcvd is not None and (caught.value.rcvd.code, caught.value.close_code) == (4000, 4000)
    ws.end()
    assert ws.state is ConnectionState.CLOSED


def test_an_abort_is_closed_with_its_own_code(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.read_response()
    ws.abort(1013, "too slow")
    assert ws.state is ConnectionState.CLOSED and ws.closed and (ws.close_code, ws.close_reason) == (1013, "too slow")
    frame = peer.read_frame()
    assert frame is not None and frame.close_code == 1013
    with pytest.raises(ConnectionClosedError):
        ws.send("after")


def test_a_normal_close_raises_connection_closed_ok_afterwards(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.read_response()
    peer.send_frame(OP_CLOSE, close_payload(1000))
    assert ws.receive() is None
    with pytest.raises(ConnectionClosedOK):
        ws.send("late")


def test_a_zero_timeout_raises_at_once_instead_of_spinning(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    with pytest.raises(TimeoutError):
        ws.receive(timeout=0)
    peer.send_frame(OP_TEXT, b"now")
    assert ws.receive(timeout=TIMEOUT) == "now"


def test_wait_closed_returns_when_the_peer_closes_with_messages_unread(pair: Callable[..., tuple[WebSocket, Peer, CountingSocket]]) -> None:
    ws, peer, _ = pair()
    ws.accept()
    peer.read_response()
    peer.send_frame(OP_TEXT, b"never read")
    peer.send_frame(OP_CLOSE, close_payload(1000))
    assert ws.wait_closed(timeout=TIMEOUT)
    assert ws.receive() == "never read", "the message stays queued for a later receive"
