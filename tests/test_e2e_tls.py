"""End to end over TLS terminated by gunicorn itself: wss:// with a self-signed certificate made by the test."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import ssl
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_PING, OP_PONG, OP_TEXT, RawClient

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_server(certificate: tuple[str, str]) -> Iterator[GunicornServer]:
    cert, key = certificate
    env = {
        "WSGI_WS_CERTFILE": cert,
        "WSGI_WS_KEYFILE": key,
        "WS_MAX_MESSAGE_SIZE": "32MiB",
        "WS_KEEP_ALIVE_INTERVAL": "0.3",
        "WS_KEEP_ALIVE_TIMEOUT": "3",  # a loaded CI machine can stall a client for a second
        "WSGI_WS_GRACEFUL_TIMEOUT": "10",
    }
    server = GunicornServer("tests.apps.routes:app", env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client_tls(certificate: tuple[str, str]) -> ssl.SSLContext:
    """A client context that trusts exactly the test's certificate."""
    return ssl.create_default_context(cafile=certificate[0])


@pytest.mark.parametrize("size", [0, 1, 125, 65536, 16 * 1024 * 1024])
def test_wss_echoes_small_and_16_mib_messages(tls_server: GunicornServer, client_tls: ssl.SSLContext, size: int) -> None:
    payload = os.urandom(size)
    with connect(f"{tls_server.url}/ws", ssl=client_tls, max_size=None, open_timeout=TIMEOUT) as ws:
        ws.send(payload)
        reply = ws.recv(timeout=3 * TIMEOUT)
        assert isinstance(reply, bytes) and hashlib.sha256(reply).digest() == hashlib.sha256(payload).digest()
        ws.send("text ✓")
        assert ws.recv(timeout=TIMEOUT) == "text ✓"


def test_wss_close_codes_both_ways(tls_server: GunicornServer, client_tls: ssl.SSLContext) -> None:
    with connect(f"{tls_server.url}/ws", ssl=client_tls, open_timeout=TIMEOUT) as ws:
        ws.close(4001, "client bye")
    assert ws.protocol.close_rcvd is not None and (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4001, "client bye")
    with connect(f"{tls_server.url}/close-with", ssl=client_tls, open_timeout=TIMEOUT) as ws:
        ws.send("4002 server bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4002


def test_wss_keep_alive_pings_and_timeout(tls_server: GunicornServer, client_tls: ssl.SSLContext) -> None:
    with RawClient(tls_server.port, tls=client_tls) as client:
        client.handshake("/report")
        for _ in range(3):  # answered pings keep the connection open
            ping = client.read_frame()
            assert ping is not None and ping.opcode == OP_PING
            client.send_frame(OP_PONG, ping.payload)
        client.send_frame(OP_TEXT, b"alive")
        assert client.read_message() == (OP_TEXT, b"alive")
        frame = client.expect_close()  # now stop answering: closed with 1011
        assert frame.close_code == 1011


def test_wss_busy_handler_still_sees_pongs_through_tls(tls_server: GunicornServer, client_tls: ssl.SSLContext) -> None:
    with RawClient(tls_server.port, tls=client_tls) as client:
        client.handshake("/busy")
        client.send_frame(OP_TEXT, b"3")
        while True:
            frame = client.read_frame()
            assert frame is not None and frame.opcode != 8, frame
            if frame.opcode == OP_PING:
                client.send_frame(OP_PONG, frame.payload)
                continue
            assert frame.payload == b"awake"
            break


def test_wss_graceful_shutdown_sends_1001(certificate: tuple[str, str], client_tls: ssl.SSLContext) -> None:
    cert, key = certificate
    server = GunicornServer(
        "tests.apps.routes:app", env={"WSGI_WS_CERTFILE": cert, "WSGI_WS_KEYFILE": key, "WSGI_WS_GRACEFUL_TIMEOUT": "10"}
    )
    try:
        with connect(f"{server.url}/ws", ssl=client_tls, open_timeout=TIMEOUT) as ws:
            ws.send("before")
            assert ws.recv(timeout=TIMEOUT) == "before"
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001
        assert server.process.wait(timeout=10 + TIMEOUT) == 0
    finally:
        server.stop()


def test_wss_protocol_error_gets_1002(tls_server: GunicornServer, client_tls: ssl.SSLContext) -> None:
    with RawClient(tls_server.port, tls=client_tls) as client:
        client.handshake("/ws")
        client.send_frame(OP_TEXT, b"x", mask=False)
        assert client.expect_close().close_code == 1002


def test_plain_text_client_on_the_tls_port_never_gets_an_upgrade(tls_server: GunicornServer, client_tls: ssl.SSLContext) -> None:
    with RawClient(tls_server.port) as client:
        client.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        try:
            reply = client.sock.recv(1024)
        except ConnectionResetError:
            reply = b""
        assert not reply.startswith(b"HTTP/1.1 101")
    with connect(f"{tls_server.url}/ws", ssl=client_tls, open_timeout=TIMEOUT) as ws:  # and the server serves on
        ws.send("fine")
        assert ws.recv(timeout=TIMEOUT) == "fine"


def test_failed_tls_handshakes_log_one_line_without_a_traceback(start_server: ServerFactory, certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server = start_server("tests.apps.routes:app", WSGI_WS_CERTFILE=cert, WSGI_WS_KEYFILE=key)
    for _ in range(3):  # plain HTTP on the TLS port
        with RawClient(server.port) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):
                client.sock.recv(1024)
    socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT).close()  # a TCP health check
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")  # does not trust the certificate
    trusting = ssl.create_default_context(cafile=cert)
    with connect(f"{server.url}/ws", ssl=trusting, open_timeout=TIMEOUT) as ws:  # and it serves on
        ws.send("fine")
        assert ws.recv(timeout=TIMEOUT) == "fine"
    log = server.log()
    assert "Traceback" not in log and "failed with SSL" not in log, log[-3000:]
    assert log.count("tls: handshake with 127.0.0.1:") == 1, "one line for the burst; the others are counted in the next"
