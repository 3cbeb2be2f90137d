"""Message limits on an open connection: token buckets with a fake clock, and the close 1008 over a socketpair."""

from __future__ import annotations

import socket

import pytest

from tests.hubkit import KEY, Peer
from tests.wsclient import OP_CLOSE, OP_TEXT, encode_frame
from wsgi_ws.connection.limits import MessageRate, TokenBucket
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest


@pytest.mark.unit
def test_a_bucket_passes_a_second_s_worth_at_once_then_the_steady_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(5.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.2  # one token back
    assert bucket.take() and not bucket.take()
    now[0] += 100.0  # never more than one second's worth
    assert sum(bucket.take() for _ in range(10)) == 5


@pytest.mark.unit
def test_message_and_byte_limits_say_which_one_was_crossed() -> None:
    now = [0.0]
    assert MessageRate.of(None, None) is None, "both off: nothing is checked per message"
    by_count = MessageRate(2, None, clock=lambda: now[0])
    assert by_count.allows("a") and by_count.allows(b"b") and not by_count.allows("c")
    assert by_count.reason == "over 2 messages per second"
    by_size = MessageRate(None, 10, clock=lambda: now[0])
    assert by_size.allows("é" * 5) and not by_size.allows("x"), "bytes of UTF-8, not characters"
    assert by_size.reason == "over 10 bytes per second"
    assert not MessageRate(None, 10, clock=lambda: now[0]).allows(b"x" * 11), "one message over a second's worth"


@pytest.mark.socket
@pytest.mark.timeout(30)
def test_a_connection_over_its_message_rate_is_closed_with_1008_and_receive_ends() -> None:
    server, client = socket.socketpair()
    with server, client:
        request = HandshakeRequest(key=KEY, origin=None, subprotocols=(), extensions=())
        options = WebSocketOptions(max_messages_per_second=3, close_timeout=0.2)
        ws = WebSocket(server, {"PATH_INFO": "/limited"}, request, options)
        ws.accept()
        peer = Peer(client)
        client.sendall(b"".join(encode_frame(OP_TEXT, f"m{n}".encode()) for n in range(10)))
        assert [ws.receive(timeout=5) for _ in range(4)] == ["m0", "m1", "m2", None]
        frame = peer.read_frame()
        assert frame is not None and frame.opcode == OP_CLOSE
        assert (frame.close_code, frame.close_reason) == (1008, "over 3 messages per second")
