"""End to end: each ASP.NET-style option against a real gunicorn, asserting exact codes and timing bounds."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, encode_frame, upgrade_request

pytestmark = pytest.mark.e2e

ROUTES = "tests.apps.routes:app"


def open_websockets(server: GunicornServer) -> int:
    with urllib.request.urlopen(f"{server.http_url}/stats", timeout=TIMEOUT) as response:
        return int(json.load(response)["open_websockets"])


# allowed_origins / require_origin


@pytest.fixture(scope="module")
def origin_server() -> Iterator[GunicornServer]:
    server = GunicornServer(ROUTES, env={"WS_ALLOWED_ORIGINS": "https://good.example, https://*.apps.example, http://localhost:5000"})
    yield server
    server.stop()


@pytest.mark.parametrize(
    "origin",
    [
        "https://good.example",
        "HTTPS://GOOD.EXAMPLE:443",
        "https://one.apps.example",
        "https://a.b.apps.example",
        "http://localhost:5000",
        None,
    ],
)
def test_allowed_origin_connects(origin_server: GunicornServer, origin: str | None) -> None:
    headers = {"Origin": origin} if origin else {}
    with RawClient(origin_server.port) as client:
        client.handshake("/report", headers=headers)
        client.send_frame(OP_TEXT, b"hi")
        assert client.read_message() == (OP_TEXT, b"hi")


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://good.example",
        "https://good.example:8443",
        "https://apps.example",
        "https://good.example.evil.net",
        "null",
    ],
)
def test_refused_origin_gets_403_and_the_handler_never_runs(origin_server: GunicornServer, origin: str) -> None:
    with RawClient(origin_server.port) as client:
        client.send(upgrade_request("/report", headers={"Origin": origin}))
        response = client.read_response()
        assert response.status == 403
        assert b"not allowed" in response.body
        client.expect_eof()
    assert f"handler ran for origin={origin}" not in origin_server.log()


def test_require_origin_refuses_clients_without_one(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WS_REQUIRE_ORIGIN="true")
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{server.url}/report", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 403
    own = Origin(f"http://127.0.0.1:{server.port}")  # same origin, the default policy: allowed once it is given
    with connect(f"{server.url}/report", origin=own, open_timeout=TIMEOUT) as ws:
        ws.send("ok")
        assert ws.recv(timeout=TIMEOUT) == "ok"


# keep_alive_interval / keep_alive_timeout

INTERVAL, KEEP_ALIVE_TIMEOUT = 0.4, 0.4


@pytest.fixture(scope="module")
def keep_alive_server() -> Iterator[GunicornServer]:
    server = GunicornServer(ROUTES, env={"WS_KEEP_ALIVE_INTERVAL": str(INTERVAL), "WS_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE_TIMEOUT)})
    yield server
    server.stop()


def test_silent_client_that_stops_answering_is_closed_with_1011_in_time(keep_alive_server: GunicornServer) -> None:
    with RawClient(keep_alive_server.port) as client:
        client.handshake("/report")
        started = time.monotonic()
        ping = client.read_frame()
        assert ping is not None and ping.opcode == OP_PING
        assert time.monotonic() - started >= INTERVAL * 0.9
        # never answer: the server must give up after the timeout
        frame = client.expect_close()
        elapsed = time.monotonic() - started
        assert frame.close_code == 1011 and frame.close_reason == "keep-alive timeout"
        assert elapsed <= INTERVAL + KEEP_ALIVE_TIMEOUT + 1.0, elapsed
    assert open_websockets(keep_alive_server) == 0
    log = keep_alive_server.log()
    assert "the client stopped answering" in log
    assert "report handler saw close_code=1011 close_reason='keep-alive timeout'" in log


def test_client_answering_pings_stays_connected(keep_alive_server: GunicornServer) -> None:
    with RawClient(keep_alive_server.port) as client:
        client.handshake("/report")
        for _ in range(5):  # five rounds of ping and pong: well past interval + timeout
            ping = client.read_frame()
            assert ping is not None and ping.opcode == OP_PING
            client.send_frame(OP_PONG, ping.payload)
        client.send_frame(OP_TEXT, b"still here")
        assert client.read_message() == (OP_TEXT, b"still here")


def test_pongs_are_noticed_while_the_handler_is_busy(keep_alive_server: GunicornServer) -> None:
    busy = 4 * (INTERVAL + KEEP_ALIVE_TIMEOUT)
    with RawClient(keep_alive_server.port, timeout=TIMEOUT + busy) as client:
        client.handshake("/busy")
        client.send_frame(OP_TEXT, str(busy).encode())
        while True:
            frame = client.read_frame()
            assert frame is not None and frame.opcode != OP_CLOSE, frame
            if frame.opcode == OP_PING:
                client.send_frame(OP_PONG, frame.payload)
                continue
            assert (frame.opcode, frame.payload) == (OP_TEXT, b"awake")
            break


def test_websockets_client_idle_with_pings_answered_automatically(keep_alive_server: GunicornServer) -> None:
    with connect(f"{keep_alive_server.url}/busy", ping_interval=None, open_timeout=TIMEOUT) as ws:
        ws.send(str(3 * (INTERVAL + KEEP_ALIVE_TIMEOUT)))
        assert ws.recv(timeout=TIMEOUT) == "awake"


def test_vanished_client_frees_its_connection(keep_alive_server: GunicornServer) -> None:
    client = RawClient(keep_alive_server.port)
    client.handshake("/report")
    client.send_frame(OP_TEXT, b"x")
    client.read_message()
    assert open_websockets(keep_alive_server) == 1
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    deadline = time.monotonic() + TIMEOUT
    while open_websockets(keep_alive_server) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the server's own counter: the event is inside another process
    assert open_websockets(keep_alive_server) == 0
    assert "report handler saw close_code=1006" in keep_alive_server.log()


# receive_buffer_size: partial reads


def _worker_pid(server: GunicornServer) -> int:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return int(children[0])


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_100_mib_single_frame_streams_in_parts_with_bounded_memory(test_app_server: GunicornServer) -> None:
    size = 100 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    expected = hashlib.sha256(block * 100).hexdigest()
    with RawClient(test_app_server.port, timeout=6 * TIMEOUT) as client:
        client.handshake("/stream")
        pid = _worker_pid(test_app_server)
        before = _peak_rss_kib(pid)
        key = b"\x00\x00\x00\x00"  # a zero mask keeps the test's own CPU cost low; the server unmasks all the same
        client.send(b"\x82\xff" + size.to_bytes(8, "big") + key)
        for _ in range(100):
            client.send(block)
        _opcode, payload = client.read_message()
        report = json.loads(payload)
        grown = _peak_rss_kib(pid) - before
    assert report == {"parts": report["parts"], "largest": 4096, "bytes": size, "sha256": expected, "kind": "binary"}
    assert report["parts"] >= size // 4096
    assert grown < 20 * 1024, f"peak memory grew {grown} KiB while streaming 100 MiB"


def test_text_streams_in_parts_of_at_most_4096_bytes_never_splitting_a_character(test_app_server: GunicornServer) -> None:
    text = "aé€😀" * 5000  # 50,000 bytes of 1-4 byte characters
    with RawClient(test_app_server.port) as client:
        client.handshake("/stream")
        client.send_frame(OP_TEXT, text[:3001].encode(), fin=False)
        client.send_frame(OP_PING, b"p")
        client.send_frame(OP_CONT, text[3001:].encode())
        frames = [client.read_frame(), client.read_frame()]
        report = json.loads(next(f.payload for f in frames if f is not None and f.opcode == OP_TEXT))
    assert report["kind"] == "text" and report["bytes"] == len(text.encode())
    assert report["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert report["largest"] <= 4096


def test_invalid_utf8_while_streaming_fails_with_1007(test_app_server: GunicornServer) -> None:
    with RawClient(test_app_server.port) as client:
        client.handshake("/stream")
        client.send_frame(OP_TEXT, b"a" * 10000 + b"\xff" + b"b" * 10000)
        assert client.expect_close().close_code == 1007


def test_receive_buffer_size_option_sets_the_part_size(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WS_RECEIVE_BUFFER_SIZE="1000")
    with RawClient(server.port) as client:
        client.handshake("/stream")
        client.send_frame(OP_BINARY, b"z" * 5500)
        report = json.loads(client.read_message()[1])
    assert (report["largest"], report["bytes"]) == (1000, 5500)
    assert 6 <= report["parts"] <= 8, "parts are filled up to the size when the bytes are there"


# max_frame_size


def test_max_frame_size_limits_frames_separately_from_messages(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WS_MAX_FRAME_SIZE="1000")
    with RawClient(server.port) as client:
        client.handshake("/ws")
        client.send(encode_frame(OP_BINARY, b"a" * 900, fin=False) + encode_frame(OP_CONT, b"b" * 900))
        assert client.read_message() == (OP_BINARY, b"a" * 900 + b"b" * 900)
        client.send_frame(OP_BINARY, b"c" * 1001)
        assert client.expect_close().close_code == 1009


# handshake_timeout


@pytest.mark.parametrize("sent", [b"", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"], ids=["nothing", "half a head"])
def test_slow_request_head_is_dropped_after_handshake_timeout(start_server: ServerFactory, sent: bytes) -> None:
    server = start_server(ROUTES, WS_HANDSHAKE_TIMEOUT="0.5")
    with RawClient(server.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the worker is up once this is answered
        assert client.read_response().status == 404
    with RawClient(server.port) as client:
        started = time.monotonic()
        if sent:
            client.send(sent)
        assert client.sock.recv(1024) == b""
        elapsed = time.monotonic() - started
    assert 0.45 <= elapsed <= 0.5 + 2.0, elapsed
