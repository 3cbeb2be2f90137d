"""Completing the handshake without a socket: the 101's bytes, the subprotocol chosen, compression agreed or not."""

from __future__ import annotations

import pytest
from websockets.headers import parse_extension

from wsgi_ws.connection.opening import open_session
from wsgi_ws.exceptions import InvalidArgument
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest

pytestmark = pytest.mark.unit

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample key


def request(subprotocols: tuple[str, ...] = (), extensions: str = "") -> HandshakeRequest:
    return HandshakeRequest(
        key=KEY, origin=None, subprotocols=subprotocols, extensions=tuple(parse_extension(extensions)) if extensions else ()
    )


def test_the_response_carries_the_rfc_accept_key() -> None:
    response, session, subprotocol = open_session(request(), WebSocketOptions(), None, ())
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and response.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 §1.3
    assert subprotocol is None and not session.compressed


def test_the_server_preference_picks_among_the_offered_subprotocols() -> None:
    response, _, subprotocol = open_session(request(("b", "a")), WebSocketOptions(subprotocols=("a", "b")), None, ())
    assert subprotocol == "a" and b"Sec-WebSocket-Protocol: a\r\n" in response


def test_a_subprotocol_not_offered_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not offered"):
        open_session(request(("a",)), WebSocketOptions(), "c", ())


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="line break"):
        open_session(request(), WebSocketOptions(), None, (("X-Evil", "a\r\nSet-Cookie: x"),))


def test_compression_is_agreed_only_when_on_and_offered() -> None:
    offered = request(extensions="permessage-deflate; client_max_window_bits")
    response, session, _ = open_session(offered, WebSocketOptions(), None, ())
    assert b"Sec-WebSocket-Extensions" not in response and not session.compressed
    response, session, _ = open_session(offered, WebSocketOptions(compression=True, compression_window_bits=10), None, ())
    assert b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_max_window_bits=10\r\n" in response
    assert session.compressed
