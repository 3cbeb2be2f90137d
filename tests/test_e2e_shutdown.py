"""End to end: graceful shutdown and reload close every WebSocket with 1001; the connection limit answers 503."""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import GunicornServer

pytestmark = pytest.mark.e2e

ROUTES = "tests.apps.routes:app"


def connect_many(stack: ExitStack, server: GunicornServer, count: int, path: str = "/ws") -> list[ClientConnection]:
    clients = [stack.enter_context(connect(f"{server.url}{path}", open_timeout=TIMEOUT, ping_interval=None)) for _ in range(count)]
    for index, ws in enumerate(clients):  # every connection is accepted and echoing
        ws.send(f"hello {index}")
        assert ws.recv(timeout=TIMEOUT) == f"hello {index}"
    return clients


def wait_for_close_codes(clients: list[ClientConnection], timeout: float) -> list[int | None]:
    codes: list[int | None] = []
    for ws in clients:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=timeout)
        codes.append(ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None)
        ws.close()
    return codes


def test_sigterm_closes_50_connections_with_1001_and_exits_within_graceful_timeout(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WSGI_WS_GRACEFUL_TIMEOUT="10")
    with ExitStack() as stack:
        clients = connect_many(stack, server, 50, "/report")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        codes = wait_for_close_codes(clients, TIMEOUT)
    server.process.wait(timeout=10 + TIMEOUT)
    elapsed = time.monotonic() - started
    assert codes == [1001] * 50
    assert elapsed < 10, f"took {elapsed:.1f} s, longer than graceful_timeout"
    log = server.log()
    assert "closing 50 WebSocket connection(s) with 1001" in log
    assert log.count("report handler saw close_code=1001 close_reason='server shutting down'") == 50
    assert "Worker graceful timeout" not in log


def test_reload_closes_old_connections_with_1001_and_new_workers_serve(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WSGI_WS_GRACEFUL_TIMEOUT="10")
    with ExitStack() as stack:
        clients = connect_many(stack, server, 5)
        server.process.send_signal(signal.SIGHUP)
        assert wait_for_close_codes(clients, TIMEOUT) == [1001] * 5
    with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("after reload")
        assert ws.recv(timeout=TIMEOUT) == "after reload"
    assert server.process.poll() is None


def test_connections_beyond_worker_connections_get_503_and_others_keep_working(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WSGI_WS_WORKER_CONNECTIONS="5")
    with ExitStack() as stack:
        clients = connect_many(stack, server, 5)
        with pytest.raises(InvalidStatus) as caught:
            connect(f"{server.url}/ws", open_timeout=TIMEOUT)
        response = caught.value.response
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert b"server at capacity" in response.body
        for index, ws in enumerate(clients):
            ws.send(f"still {index}")
            assert ws.recv(timeout=TIMEOUT) == f"still {index}"
        clients.pop().close()
        with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:  # a freed slot is usable again
            ws.send("in")
            assert ws.recv(timeout=TIMEOUT) == "in"
    assert "worker_connections (5) reached" in server.log()


def test_clock_pushes_from_a_background_thread_until_the_client_closes(echo_server: GunicornServer) -> None:
    with connect(f"{echo_server.url}/clock?interval=0.05", open_timeout=TIMEOUT) as ws:
        ticks = [json.loads(ws.recv(timeout=TIMEOUT))["tick"] for _ in range(5)]
        assert ticks == [1, 2, 3, 4, 5]
        started = time.monotonic()
        ws.close(1000, "enough")
        assert time.monotonic() - started < 2.0, "the handler noticed the close at once (wait_closed reads)"
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000


def test_clock_worker_finishing_closes_the_connection(echo_server: GunicornServer) -> None:
    with connect(f"{echo_server.url}/clock?interval=0.01&count=3", open_timeout=TIMEOUT) as ws:
        assert [json.loads(message)["tick"] for message in ws] == [1, 2, 3]
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1000, "done")


def test_clock_rejects_bad_parameters_with_400_before_accepting(echo_server: GunicornServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{echo_server.url}/clock?interval=fast", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 400


def test_background_sender_and_receiving_handler_share_the_socket(echo_server: GunicornServer) -> None:
    """While the clock pushes, the client's pings and its messages do not disturb the pushing."""
    received: list[int] = []
    with connect(f"{echo_server.url}/clock?interval=0.02", open_timeout=TIMEOUT) as ws:
        done = threading.Event()

        def pinger() -> None:
            for _ in range(5):
                ws.ping().wait(TIMEOUT)
            done.set()

        threading.Thread(target=pinger).start()
        while not done.is_set() or len(received) < 5:
            received.append(json.loads(ws.recv(timeout=TIMEOUT))["tick"])
    assert received == list(range(1, len(received) + 1))
