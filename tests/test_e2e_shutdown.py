"""End to end: shutdown, rolling restart and --reload stop accepting at once, close with 1001 and exit when drained; 503s."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import ROOT, GunicornServer
from tests.wsclient import RawClient, upgrade_request

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


def attempt_after_signal(server: GunicornServer) -> str:
    """One connection made while the server goes away: "refused", "503", "1001" (closed at once), or "open" (wrong)."""
    try:
        ws = connect(f"{server.url}/ws", open_timeout=2, ping_interval=None)
    except InvalidStatus as error:
        return str(error.response.status_code)
    except (OSError, InvalidHandshake, ConnectionClosed):  # refused, reset, or closed before any answer
        return "refused"
    with ws:
        try:
            ws.recv(timeout=2)
        except ConnectionClosed:
            return str(ws.protocol.close_rcvd.code) if ws.protocol.close_rcvd else "cut"
        except TimeoutError:
            return "open"
    return "open"


def wait_for_log(server: GunicornServer, text: str, timeout: float) -> float:
    """Wait until the server's log contains ``text``; returns the monotonic time it was seen."""
    return wait_for_any_log(server, (text,), timeout)


def wait_for_any_log(server: GunicornServer, texts: tuple[str, ...], timeout: float) -> float:
    """Wait until the server's log contains one of ``texts``; returns the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while not any(text in server.log() for text in texts):
        assert time.monotonic() < deadline, f"none of {texts!r} logged within {timeout} s"
        time.sleep(0.02)
    return time.monotonic()


def worker_pids(server: GunicornServer, count: int) -> set[int]:
    deadline = time.monotonic() + TIMEOUT
    while len(pids := {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", server.log())}) < count:
        assert time.monotonic() < deadline, f"fewer than {count} workers booted"
        time.sleep(0.02)
    return pids


def test_sigterm_stops_accepting_at_once_answers_pending_upgrades_503_and_exits_when_drained(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WSGI_WS_GRACEFUL_TIMEOUT="10")
    with ExitStack() as stack:
        clients = connect_many(stack, server, 3)
        pending = stack.enter_context(RawClient(server.port))  # accepted, its upgrade request not yet complete
        request = upgrade_request()
        pending.send(request[:30])
        keep_alive = stack.enter_context(RawClient(server.port))  # an idle keep-alive HTTP connection
        keep_alive.send(b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert keep_alive.read_response().status == 404
        clients += connect_many(stack, server, 1)  # served after the two above: the worker has accepted them
        server.listener.close()  # only gunicorn holds the listening socket now: once it lets go, connections are refused
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        late = [attempt_after_signal(server) for _ in range(10)]
        pending.send(request[30:])
        answer = pending.read_response()
        assert wait_for_close_codes(clients, TIMEOUT) == [1001] * 4
        keep_alive.expect_eof()
    server.process.wait(timeout=10 + TIMEOUT)
    elapsed = time.monotonic() - started
    assert set(late) <= {"refused", "503", "1001"}, late
    assert answer.status == 503 and answer.headers["retry-after"] == "1" and b"server shutting down" in answer.body
    assert elapsed < 3, f"the master took {elapsed:.1f} s to exit, though every connection had ended"
    assert "Worker graceful timeout" not in server.log()


def test_reload_on_code_change_closes_with_1001_at_once_and_new_code_serves(start_server: ServerFactory, tmp_path: Path) -> None:
    module = tmp_path / "reloaded_app.py"
    source = (
        "from wsgi_ws.flask_ext import WebSockets\nfrom flask import Flask\napp = Flask(__name__)\nsockets = WebSockets(app)\n"
        "VERSION = {!r}\n\n@sockets.route('/ws')\ndef echo(ws):\n    for message in ws:\n        ws.send(VERSION + ':' + message)\n"
    )
    module.write_text(source.format("one"))
    os.utime(module, (time.time() - 60, time.time() - 60))  # the change below is newer, whatever the clock's grain
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "WSGI_WS_GRACEFUL_TIMEOUT": "30"}
    server = GunicornServer("reloaded_app:app", env=env, args=("--reload",))
    try:
        with server.connect("/ws", ping_interval=None) as ws:
            ws.send("a")
            assert ws.recv(timeout=TIMEOUT) == "one:a"
            module.write_text(source.format("two"))
            changed = time.monotonic()
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001
            closed = time.monotonic() - changed
        with server.connect("/ws", ping_interval=None) as ws:
            ws.send("b")
            assert ws.recv(timeout=TIMEOUT) == "two:b"
        serving = time.monotonic() - changed
        assert closed < 2.5, f"1001 came {closed:.1f} s after the change (the reloader looks once a second)"
        assert serving < 5, f"the new code served {serving:.1f} s after the change"
    finally:
        server.stop()


def test_rolling_restart_new_workers_serve_old_ones_close_with_1001_and_exit_at_once(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WSGI_WS_WORKERS="2", WSGI_WS_GRACEFUL_TIMEOUT="30")
    with ExitStack() as stack:
        old_clients = connect_many(stack, server, 6)
        old_pids = worker_pids(server, 2)
        started = time.monotonic()
        server.process.send_signal(signal.SIGHUP)
        assert wait_for_close_codes(old_clients, TIMEOUT) == [1001] * 6
        assert time.monotonic() - started < 2
        for pid in old_pids:  # both stopped accepting (all six may be on one), else a new client may rightly get a 503;
            # a worker told to stop before it began serving logs only its exit
            wait_for_any_log(server, (f"worker {pid} shutting down: stopped accepting", f"Worker exiting (pid: {pid})"), TIMEOUT)
        new_clients = connect_many(stack, server, 6)  # made right after the old workers began going away
        for pid in old_pids:
            wait_for_log(server, f"Worker exiting (pid: {pid})", TIMEOUT)
        gone = time.monotonic() - started
        for index, ws in enumerate(new_clients):  # served by the new workers: not cut when the old ones left
            ws.send(f"still {index}")
            assert ws.recv(timeout=TIMEOUT) == f"still {index}"
    assert gone < 5, f"the old workers took {gone:.1f} s to exit (graceful_timeout 30 s)"
    assert server.process.poll() is None
    assert "Worker graceful timeout" not in server.log()
