"""End to end through nginx with the project's deploy/nginx.conf: upgrade, echo, close codes, pings, origins."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.nginx import NGINX, NginxProxy
from tests.server import GunicornServer
from tests.wsclient import OP_PING, OP_PONG, OP_TEXT, RawClient

pytestmark = pytest.mark.e2e

if not shutil.which(NGINX):
    if os.environ.get("CI"):
        raise RuntimeError("nginx is missing: .ci/run must install Debian's nginx package")
    pytest.skip("nginx is not installed (apt-get install nginx); CI installs it and never skips", allow_module_level=True)

ROUTES = "tests.apps.routes:app"
INTERVAL = 0.4
NGINX_READ_TIMEOUT = 2  # seconds; nginx's default is 60 s, shortened so the test stays short


@pytest.fixture(scope="module")
def backend() -> Iterator[GunicornServer]:
    server = GunicornServer(ROUTES, env={"WS_KEEP_ALIVE_INTERVAL": str(INTERVAL), "WS_ALLOWED_ORIGINS": "https://app.example"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(backend: GunicornServer) -> Iterator[NginxProxy]:
    nginx = NginxProxy(backend.port, read_timeout=f"{NGINX_READ_TIMEOUT}s")
    yield nginx
    nginx.stop()


def test_echo_and_close_codes_through_nginx(proxy: NginxProxy) -> None:
    with connect(f"{proxy.url}/ws", max_size=None, open_timeout=TIMEOUT) as ws:
        ws.send("through nginx ✓")
        assert ws.recv(timeout=TIMEOUT) == "through nginx ✓"
        ws.send(b"\x00" * 1_000_000)
        assert ws.recv(timeout=TIMEOUT) == b"\x00" * 1_000_000
        ws.close(4005, "via proxy")
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4005, "via proxy")


@pytest.mark.parametrize(("path", "greetings"), [("/route/small", 1), ("/rooms/echo?x=1", 0), ("/hub/nginx", 1)])
def test_every_websocket_route_upgrades_through_nginx(proxy: NginxProxy, path: str, greetings: int) -> None:
    """Not only /ws: a route with a path parameter, a blueprint's prefix or a query string upgrades too."""
    with connect(f"{proxy.url}{path}", open_timeout=TIMEOUT) as ws:
        for _ in range(greetings):  # the route's first message: its options, or which worker serves it
            assert json.loads(ws.recv(timeout=TIMEOUT))
        ws.send("any route")
        assert ws.recv(timeout=TIMEOUT) == "any route"


def test_server_close_code_reaches_the_client_through_nginx(proxy: NginxProxy) -> None:
    with connect(f"{proxy.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send(b"x" * (1024 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009


def test_pings_keep_an_idle_connection_open_past_nginx_read_timeout(proxy: NginxProxy) -> None:
    with RawClient(proxy.port, timeout=TIMEOUT) as client:
        client.handshake("/ws")
        started = time.monotonic()
        while time.monotonic() - started < 2.5 * NGINX_READ_TIMEOUT:  # idle, but for the server's pings
            ping = client.read_frame()
            assert ping is not None and ping.opcode == OP_PING, ping
            client.send_frame(OP_PONG, ping.payload)
        client.send_frame(OP_TEXT, b"still open")
        assert client.read_message() == (OP_TEXT, b"still open")


def test_without_pings_nginx_drops_the_idle_connection(start_server: ServerFactory) -> None:
    """The control: with keep-alive off, nginx's read timeout ends an idle WebSocket."""
    backend = start_server(ROUTES, WS_KEEP_ALIVE_INTERVAL="0")
    nginx = NginxProxy(backend.port, read_timeout=f"{NGINX_READ_TIMEOUT}s")
    try:
        with RawClient(nginx.port, timeout=3 * TIMEOUT) as client:
            client.handshake("/ws")
            started = time.monotonic()
            assert client.read_frame() is None  # EOF from nginx
            assert NGINX_READ_TIMEOUT * 0.5 <= time.monotonic() - started <= NGINX_READ_TIMEOUT + TIMEOUT
    finally:
        nginx.stop()


def test_origin_policy_applies_behind_the_proxy(proxy: NginxProxy) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{proxy.url}/ws", origin=Origin("https://evil.example"), open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 403
    with connect(f"{proxy.url}/ws", origin=Origin("https://app.example"), open_timeout=TIMEOUT) as ws:
        ws.send("allowed")
        assert ws.recv(timeout=TIMEOUT) == "allowed"


def test_plain_pages_and_forwarded_headers_through_nginx(proxy: NginxProxy) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/headers", timeout=TIMEOUT) as response:
        seen = json.load(response)
    host = f"127.0.0.1:{proxy.port}"  # $http_host: with the port, so the app sees the origin the browser used
    forwarded = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": host, "Host": host}
    # No Connection header (not "close") on a plain request: nginx keeps its upstream connections for the next one.
    assert seen == {**forwarded, "Connection": None, "Upgrade": None}
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{proxy.url}/nowhere", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 404
