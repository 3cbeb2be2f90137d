"""The one place that runs a WebSocket application, over a socketpair: registration, 1011, callbacks, metrics, logs."""

from __future__ import annotations

import functools
import io
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from tests.constants import TIMEOUT
from tests.wsclient import OP_CLOSE, OP_TEXT, RawClient, close_payload
from wsgi_ws import metrics
from wsgi_ws.connection.keepalive import ConnectionMonitor
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.exceptions import ConnectionClosed, InvalidState
from wsgi_ws.integrations.handler import HANDLER_ERROR, opened, run_app
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest

pytestmark = pytest.mark.socket

REQUEST = HandshakeRequest(key="dGhlIHNhbXBsZSBub25jZQ==", origin=None, subprotocols=())
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Peer(RawClient):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        sock.settimeout(TIMEOUT)


@pytest.fixture
def connection() -> Iterator[tuple[WebSocket, Peer, ConnectionMonitor, dict[str, Any]]]:
    server, client = socket.socketpair()
    monitor = ConnectionMonitor(lambda *args: None)
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/t", "QUERY_STRING": "", "SCRIPT_NAME": ""}
    environ["wsgi.input"] = io.BytesIO()
    setup_testing_defaults(environ)
    ws = WebSocket(server, environ, REQUEST, WebSocketOptions(close_timeout=0.5), on_accept=functools.partial(opened, monitor))
    yield ws, Peer(client), monitor, environ
    server.close()
    client.close()


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
    return lambda data: None


def test_an_accepted_connection_is_registered_then_ended_and_unregistered(
    connection: tuple[WebSocket, Peer, ConnectionMonitor, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ws, peer, monitor, environ = connection
    seen: list[int] = []
    finished = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        socket_ = environ["wsgi.websocket"]
        socket_.on_finish(finished.set)
        socket_.accept()
        seen.append(len(monitor))
        for message in socket_:
            socket_.send(message)
        return []

    before = metrics.snapshot()
    peer.send_frame(OP_TEXT, b"hi")
    peer.send_frame(OP_CLOSE, close_payload(1000))
    with caplog.at_level(logging.INFO, logger="wsgi_ws"):
        assert run_app(app, environ, start_response, ws, monitor) is None
    assert seen == [1] and len(monitor) == 0 and finished.is_set()
    assert peer.read_response().status == 101 and peer.read_message() == (OP_TEXT, b"hi")
    after = metrics.snapshot()
    assert after["accepted"] == before["accepted"] + 1 and after["closed"] == before["closed"] + 1
    assert "ws.accept path=/t" in caplog.text and "ws.close path=/t" in caplog.text and "code=1000" in caplog.text


def test_an_error_after_accept_closes_with_1011_and_logs_the_traceback(
    connection: tuple[WebSocket, Peer, ConnectionMonitor, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ws, peer, monitor, environ = connection

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.websocket"].accept()
        raise RuntimeError("handler bug")

    with caplog.at_level(logging.INFO, logger="wsgi_ws"):
        assert run_app(app, environ, start_response, ws, monitor) is None
    peer.read_response()
    frame = peer.read_frame()
    assert frame is not None and frame.opcode == OP_CLOSE and frame.close_code == 1011
    assert "raised; closing with 1011" in caplog.text and "RuntimeError: handler bug" in caplog.text
    error = environ[HANDLER_ERROR]
    assert isinstance(error, RuntimeError) and str(error) == "handler bug", "left for the caller (the test client re-raises it)"


def test_a_handler_ending_on_a_closed_connection_is_no_error(
    connection: tuple[WebSocket, Peer, ConnectionMonitor, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ws, peer, monitor, environ = connection

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        socket_ = environ["wsgi.websocket"]
        while socket_.receive() is not None:
            pass
        socket_.receive()  # a second receive after the end raises ConnectionClosedOK
        return []

    peer.send_frame(OP_CLOSE, close_payload(1000))
    with caplog.at_level(logging.INFO, logger="wsgi_ws"):
        run_app(app, environ, start_response, ws, monitor)
    assert "ended on a closed connection" in caplog.text and "Traceback" not in caplog.text
    assert HANDLER_ERROR not in environ, "a normal end: nothing for the test client to raise"


def test_an_http_answer_before_accept_is_passed_through_and_ends_the_request(
    connection: tuple[WebSocket, Peer, ConnectionMonitor, dict[str, Any]],
) -> None:
    ws, _peer, monitor, environ = connection

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such room\n"]

    result = run_app(validator(app), environ, start_response, ws, monitor)
    assert result is not None
    assert b"".join(result) == b"no such room\n"
    getattr(result, "close", lambda: None)()
    with pytest.raises(InvalidState, match="request has already ended"):
        ws.accept()
    with pytest.raises(ConnectionClosed):
        ws.send("too late")  # a background thread that outlived the request
    assert len(monitor) == 0


def test_an_error_before_accept_is_still_plain_http(connection: tuple[WebSocket, Peer, ConnectionMonitor, dict[str, Any]]) -> None:
    ws, _peer, monitor, environ = connection

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise LookupError("before accept")

    with pytest.raises(LookupError):
        run_app(app, environ, start_response, ws, monitor)
    assert not ws.accepted
