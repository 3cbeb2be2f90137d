"""End to end: how connections end, handler errors, concurrent senders, and gevent-websocket compatibility."""

from __future__ import annotations

import threading

import pytest
from websockets.exceptions import ConnectionClosed as WebsocketsConnectionClosed
from websockets.sync.client import connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_CLOSE, OP_TEXT, RawClient, close_payload, closed_by_server_after

pytestmark = pytest.mark.e2e


def test_handler_error_after_accept_closes_1011_logs_and_worker_lives_on(test_app_server: GunicornServer) -> None:
    assert closed_by_server_after(f"{test_app_server.url}/raise-after", "trigger")[0] == 1011
    with connect(f"{test_app_server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("still serving")
        assert ws.recv(timeout=TIMEOUT) == "still serving"
    log = test_app_server.log()
    assert "closing with 1011" in log and "RuntimeError: boom after accept" in log and "Traceback" in log


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "going"), (4000, "custom ✓"), (3999, "x" * 100)])
def test_handler_close_sends_its_code_and_reason(test_app_server: GunicornServer, code: int, reason: str) -> None:
    with connect(f"{test_app_server.url}/close-with", open_timeout=TIMEOUT) as ws:
        ws.send(f"{code} {reason}")
        with pytest.raises(WebsocketsConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (code, reason)


def test_handler_close_without_peer_reply_gives_up_after_close_timeout(test_app_server: GunicornServer) -> None:
    """A client that never answers the close frame is cut off after close_timeout (2 s here)."""
    with RawClient(test_app_server.port, timeout=3 * TIMEOUT) as client:
        client.handshake("/close-with")
        client.send_frame(OP_TEXT, b"4000 bye")
        frame = client.read_frame()
        assert frame is not None and frame.opcode == OP_CLOSE and frame.close_code == 4000
        client.expect_eof()  # the server closes TCP by itself


def test_handler_sees_client_close_code_and_reason(test_app_server: GunicornServer) -> None:
    with RawClient(test_app_server.port) as client:
        client.handshake("/close-code")
        client.send_frame(OP_CLOSE, close_payload(4444, "from client"))
        assert client.expect_close().close_code == 4444
    with connect(f"{test_app_server.url}/ws", open_timeout=TIMEOUT) as ws:  # the log line is written by now
        ws.send("sync")
        ws.recv(timeout=TIMEOUT)
    assert "handler saw close_code=4444 close_reason='from client'" in test_app_server.log()


def test_receive_and_send_after_close_raise_connection_closed(test_app_server: GunicornServer) -> None:
    with RawClient(test_app_server.port) as client:
        client.handshake("/after-close")
        client.send_frame(OP_CLOSE, close_payload(1000))
        client.expect_close()
    with connect(f"{test_app_server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("sync")
        ws.recv(timeout=TIMEOUT)
    assert "after close: ConnectionClosedOK,ConnectionClosedOK" in test_app_server.log()


def test_concurrent_senders_never_interleave_frames(test_app_server: GunicornServer) -> None:
    writers, count = 8, 300
    with RawClient(test_app_server.port) as client:
        client.handshake("/concurrent")
        client.send_frame(OP_TEXT, f"{writers} {count}".encode())
        seen: dict[int, int] = {}
        while True:
            opcode, payload = client.read_message()  # asserts well-formed frames
            assert opcode == OP_TEXT
            text = payload.decode()
            if text == "done":
                break
            index, number, filler = text.split(":")
            assert filler == "x" * (int(number) % 5000)
            assert seen.get(int(index), -1) == int(number) - 1, "messages of one writer arrive in order"
            seen[int(index)] = int(number)
        assert seen == {index: count - 1 for index in range(writers)}


def test_gevent_websocket_style_app_runs_unchanged(start_server: ServerFactory) -> None:
    server = start_server("tests.apps.gws_style:app")
    with connect(f"{server.url}/anything", open_timeout=TIMEOUT) as ws:
        ws.send("text")
        assert ws.recv(timeout=TIMEOUT) == "text"
        ws.send(b"\x00binary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00binary"
        ws.send("close-please")
        with pytest.raises(WebsocketsConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4321, "as asked")
    with connect(f"{server.url}/anything", open_timeout=TIMEOUT) as ws:  # the access log line of the first is written
        ws.send("sync")
        assert ws.recv(timeout=TIMEOUT) == "sync"
    log = server.log()
    assert '"GET /anything HTTP/1.1" 101' in log
    assert "Traceback" not in log and "failed with" not in log


def test_access_log_still_sees_request_headers_after_the_upgrade() -> None:
    # Once upgraded the worker drops pywsgi's parsed headers (memory per idle connection) for a view of the environ.
    server = GunicornServer(args=("--access-logformat", "%(r)s %(s)s ua=%({user-agent}i)s tag=%({x-trace-tag}i)s"))
    try:
        with connect(
            f"{server.url}/ws", open_timeout=TIMEOUT, user_agent_header="probe/1.0", additional_headers={"X-Trace-Tag": "t-42"}
        ) as ws:
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
        with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:  # the access log line of the first is written
            ws.send("sync")
            assert ws.recv(timeout=TIMEOUT) == "sync"
        log = server.log()
        assert "GET /ws HTTP/1.1 101 ua=probe/1.0 tag=t-42" in log, log
    finally:
        server.stop()


def test_many_clients_closing_at_once_all_get_their_close(echo_server: GunicornServer) -> None:
    results: list[int | None] = []
    lock = threading.Lock()

    def client(code: int) -> None:
        with connect(f"{echo_server.url}/ws", open_timeout=TIMEOUT) as ws:
            ws.close(code)
        with lock:
            results.append(ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None)

    threads = [threading.Thread(target=client, args=(4000 + index,)) for index in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=3 * TIMEOUT)
    assert sorted(code for code in results if code is not None) == list(range(4000, 4050))
