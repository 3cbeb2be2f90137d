"""wsgi_ws.bearer_token: the token from the Authorization header, the bearer. subprotocol or the query string."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import wsgi_ws
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.integrations.auth import BEARER_SUBPROTOCOL, bearer_token, offered_subprotocols
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest

pytestmark = pytest.mark.unit

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HTTP_AUTHORIZATION": f"Bearer {JWT}"}, JWT),
        ({"HTTP_AUTHORIZATION": f"bearer   {JWT}  "}, JWT),  # the scheme is case-insensitive (RFC 7235)
        ({"HTTP_SEC_WEBSOCKET_PROTOCOL": f"chat.v1, {BEARER_SUBPROTOCOL}{JWT}"}, JWT),
        ({"QUERY_STRING": f"room=lobby&access_token={JWT}"}, JWT),
        ({"QUERY_STRING": "access_token=a%2Bb%3D"}, "a+b="),  # percent-decoded, as request.args has it
        ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz", "QUERY_STRING": "access_token=q"}, "q"),  # not a bearer header
        ({"HTTP_AUTHORIZATION": "Bearer h", "HTTP_SEC_WEBSOCKET_PROTOCOL": "bearer.s", "QUERY_STRING": "access_token=q"}, "h"),
        ({"HTTP_SEC_WEBSOCKET_PROTOCOL": "bearer.s", "QUERY_STRING": "access_token=q"}, "s"),  # subprotocol before the URL
        ({"HTTP_AUTHORIZATION": "Bearer ", "HTTP_SEC_WEBSOCKET_PROTOCOL": "bearer.", "QUERY_STRING": "access_token="}, None),
        ({"HTTP_SEC_WEBSOCKET_PROTOCOL": "chat.v1", "QUERY_STRING": "token=x"}, None),
        ({}, None),
    ],
)
def test_bearer_token_from_an_environ(environ: dict[str, str], expected: str | None) -> None:
    assert bearer_token(environ) == expected


@pytest.mark.timeout(10)
def test_the_query_parameter_can_be_renamed_or_refused() -> None:
    environ = {"QUERY_STRING": "token=t&access_token=a"}
    assert bearer_token(environ, query_parameter="token") == "t"
    assert bearer_token(environ, query_parameter=None) is None


@pytest.fixture
def ws() -> Iterator[WebSocket]:
    server, client = socket.socketpair()
    request = HandshakeRequest(key="dGhlIHNhbXBsZSBub25jZQ==", origin=None, subprotocols=("wsgi-ws", f"bearer.{JWT}", "chat.v1"))
    yield WebSocket(server, {"PATH_INFO": "/ws", "QUERY_STRING": ""}, request, WebSocketOptions())
    server.close()
    client.close()


@pytest.mark.timeout(10)
def test_bearer_token_and_the_real_subprotocols_of_a_websocket(ws: WebSocket) -> None:
    assert wsgi_ws.bearer_token is bearer_token, "a public name"
    assert bearer_token(ws) == JWT
    assert offered_subprotocols(ws) == ("wsgi-ws", "chat.v1"), "the token is never one to accept with"
    assert offered_subprotocols(ws, tokens=True) == ws.offered_subprotocols
    assert offered_subprotocols({"HTTP_SEC_WEBSOCKET_PROTOCOL": f" a ,bearer.{JWT}, b"}) == ("a", "b")
