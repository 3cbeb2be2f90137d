"""The same handlers under every supported server: our gevent worker, gunicorn's gthread worker, and `flask run`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.constants import TIMEOUT
from tests.nginx import free_port
from tests.server import ROOT, GunicornServer
from tests.waiting import wait_until
from tests.wsclient import OP_PING, OP_TEXT, RawClient, upgrade_request
from wsgi_ws.testing.live import ServerLog

pytestmark = pytest.mark.e2e

ROUTES = "tests.apps.routes:app"


class FlaskRun:
    """`flask run` (Werkzeug's threaded development server) on a free loopback port."""

    def __init__(self, app: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_"))}
        environment.update({"PYTHONPATH": str(ROOT), "WS_CLOSE_TIMEOUT": "2", **(env or {})})
        self._log = ServerLog("wsgi-ws-flask-run-", "server.log")
        with self._log.open() as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", app, "run", "--port", str(self.port)],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 3 * TIMEOUT
        while True:  # Werkzeug binds its own socket: wait until it accepts (bounded)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the server printed so far (Werkzeug's request lines, wsgi-ws's warnings); after stop(), all of it."""
        return self._log.text()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=TIMEOUT)
        self._log.close()


#: The server's own origin policy: two sites, which /route/narrow narrows to one (a route narrows, never widens).
SERVER_ENV = {"WS_CLOSE_TIMEOUT": "2", "WS_ALLOWED_ORIGINS": "https://app.example, https://other.example"}


#: The three servers every end-to-end test of routes runs under.
SERVER_KINDS = ("gevent-worker", "gthread", "flask-run")


def start_kind(kind: str, app: str, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()) -> GunicornServer | FlaskRun:
    """``app`` under one of :data:`SERVER_KINDS`, with these environment settings (``WS_CLOSE_TIMEOUT=2`` unless given)."""
    environment = {"WS_CLOSE_TIMEOUT": "2", **(env or {})}
    if kind == "flask-run":
        return FlaskRun(app, environment)
    if kind == "gthread":
        args = ("-k", "gthread", "--threads", "16", *args)
    return GunicornServer(app, env=environment, args=args)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[GunicornServer | FlaskRun]:
    running = start_kind(request.param, ROUTES, SERVER_ENV)
    yield running
    running.stop()


def test_every_server_logs_the_accept_and_the_close(server: GunicornServer | FlaskRun) -> None:
    """gthread and flask run logged neither (the library's logger had no handler there)."""
    with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("logged")
        assert ws.recv(timeout=TIMEOUT) == "logged"
    wait_until(lambda: "ws.close path=/ws peer=127.0.0.1:" in server.log(), "no ws.close line")
    assert "ws.accept path=/ws peer=127.0.0.1:" in server.log()
    assert "connection closed" not in server.log()


def test_echo_text_and_binary(server: GunicornServer | FlaskRun) -> None:
    with connect(f"{server.url}/ws", open_timeout=TIMEOUT, max_size=None) as ws:
        for message in ("text ✓", b"\x00binary", "", b"x" * 70000):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        ws.close(4001, "bye")
    assert ws.protocol.close_rcvd is not None and (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4001, "bye")


def test_plain_get_is_400_and_refusal_before_accept_is_exact(server: GunicornServer | FlaskRun) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.http_url}/ws", timeout=TIMEOUT)
    assert caught.value.code == 400
    caught.value.close()
    with RawClient(server.port) as client:
        client.send(upgrade_request("/deny"))
        response = client.read_response()
        assert (response.status, response.body) == (403, b"no entry\n")


def test_bad_handshake_is_426(server: GunicornServer | FlaskRun) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("/ws", headers={"Sec-WebSocket-Version": "8"}))
        response = client.read_response()
        assert response.status == 426 and response.headers["sec-websocket-version"] == "13"


def test_handler_error_closes_1011_and_the_server_serves_on(server: GunicornServer | FlaskRun) -> None:
    with connect(f"{server.url}/raise-after", open_timeout=TIMEOUT) as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1011
    with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"


def test_concurrent_senders_and_many_connections(server: GunicornServer | FlaskRun) -> None:
    with RawClient(server.port) as client:
        client.handshake("/concurrent")
        client.send_frame(OP_TEXT, b"4 100")
        count = 0
        while client.read_message()[1] != b"done":
            count += 1
        assert count == 400
    errors: list[str] = []

    def one(index: int) -> None:
        try:
            with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:
                for number in range(20):
                    ws.send(f"{index}/{number}")
                    assert ws.recv(timeout=TIMEOUT) == f"{index}/{number}"
        except Exception as exc:  # collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(index,)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * TIMEOUT)
    assert errors == []


def test_partial_reads(server: GunicornServer | FlaskRun) -> None:
    with RawClient(server.port) as client:
        client.handshake("/stream")
        client.send_frame(0x2, b"z" * 10000)
        report = json.loads(client.read_message()[1])
    assert (report["bytes"], report["largest"]) == (10000, 4096)


def test_a_route_with_a_smaller_message_limit_applies_it_to_its_own_connections_only(server: GunicornServer | FlaskRun) -> None:
    with RawClient(server.port) as client:
        client.handshake("/route/small")
        assert json.loads(client.read_message()[1])["max_message_size"] == 100
        client.send_frame(OP_TEXT, b"x" * 100)
        assert client.read_message() == (OP_TEXT, b"x" * 100)
        client.send_frame(OP_TEXT, b"x" * 101)
        assert client.expect_close().close_code == 1009
    with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:  # the process's 1 MiB elsewhere
        ws.send("x" * 101)
        assert ws.recv(timeout=TIMEOUT) == "x" * 101


def test_a_route_with_its_own_keep_alive_interval_pings_on_its_schedule(server: GunicornServer | FlaskRun) -> None:
    with RawClient(server.port) as client:
        client.handshake("/route/pings")
        assert json.loads(client.read_message()[1])["keep_alive_interval"] == 0.2  # the process's is 120 s
        frame = client.read_frame()  # silence: the route's 0.2 s interval brings a ping well within TIMEOUT
        assert frame is not None and frame.opcode == OP_PING and frame.payload == b"keep-alive"


def test_a_route_with_its_own_origins_refuses_others_before_accept(server: GunicornServer | FlaskRun) -> None:
    with RawClient(server.port) as client:  # the server allows it; the route does not
        client.send(upgrade_request("/route/narrow", headers={"Origin": "https://other.example"}))
        response = client.read_response()
        assert response.status == 403 and b"https://other.example" in response.body
    with RawClient(server.port) as client:  # the server's own policy refuses first
        client.send(upgrade_request("/route/narrow", headers={"Origin": "https://third.example"}))
        assert client.read_response().status == 403
    with RawClient(server.port) as client:
        client.handshake("/route/narrow", headers={"Origin": "https://app.example"})
        assert json.loads(client.read_message()[1])["max_message_size"] == 1024 * 1024


def test_a_route_on_a_blueprint_is_served_under_its_prefix(server: GunicornServer | FlaskRun) -> None:
    with connect(f"{server.url}/rooms/echo", open_timeout=TIMEOUT) as ws:
        ws.send("from a blueprint")
        assert ws.recv(timeout=TIMEOUT) == "from a blueprint"


def test_unsupported_server_refuses_clearly_instead_of_hanging() -> None:
    """wsgiref exposes no socket: the first WebSocket request gets 500 with the reason."""
    from tests.apps.routes import app

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with RawClient(httpd.server_port) as client:  # wsgiref answers in HTTP/1.0, which websockets' client refuses
            client.send(upgrade_request("/ws"))
            response = client.read_response()
        assert response.status == 500
        assert b"cannot serve WebSockets" in response.body
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("worker", ["wsgi_ws.worker.WebSocketWorker", "gthread"])
def test_plain_wsgi_app_with_the_middleware(worker: str) -> None:
    server = GunicornServer("tests.apps.plain_wsgi:app", args=("-k", worker, "--threads", "4"))
    try:
        with connect(f"{server.url}/any/path", subprotocols=["plain.v1"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "plain.v1"
            ws.send("no flask here")
            assert ws.recv(timeout=TIMEOUT) == "no flask here"
        with urllib.request.urlopen(f"{server.http_url}/", timeout=TIMEOUT) as response:
            assert response.read() == b"plain WSGI page\n"
        with RawClient(server.port) as client:  # the middleware's own keep_alive_interval (0.2 s; the process's is 120 s)
            client.handshake("/any/path")
            frame = client.read_frame()
            assert frame is not None and frame.opcode == OP_PING
    finally:
        server.stop()
