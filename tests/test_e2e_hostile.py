"""Hostile input at the edges (issue 16): each gets its documented answer, never a traceback or a hang.

Request heads over gunicorn's limits (a 10,000-parameter ``Sec-WebSocket-Extensions`` offer on one line, thousands
of headers, a 100 KB header) are answered 400 before any upgrade (or, as the server closes with the rest of the head
unread, a TCP reset may overtake it); a close reason that is not UTF-8 gets 1007; a client over
``max_messages_per_second`` gets 1008; a client that never reads while the server sends is cut after
``send_timeout`` (1006); a ping flood from a client that reads nothing gets a bounded number of pongs, and the
worker's memory stays flat while it serves the others.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.waiting import wait_until
from tests.wsclient import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawClient, encode_frame, upgrade_request

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    made = GunicornServer("tests.apps.routes:app")
    yield made
    made.stop()


HEADS = {
    "an extensions offer of 10,000 parameters": {
        "Sec-WebSocket-Extensions": "permessage-deflate; " + "; ".join(f"p{n}=1" for n in range(10_000))
    },
    "5,000 headers": {f"X-Header-{n}": "v" for n in range(5_000)},
    "a 100 KB header": {"X-Big": "a" * 100_000},
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("head", HEADS, ids=list(HEADS))
def test_request_heads_over_the_limits_get_400_and_no_traceback(server: GunicornServer, head: str) -> None:
    before = server.log().count("Traceback")
    with RawClient(server.port) as client:
        client.send(upgrade_request(headers=HEADS[head]))
        try:
            assert client.read_response().status == 400
            client.expect_eof()
        except ConnectionResetError:
            pass  # the server closed with the rest of the head unread: the kernel may send RST before the 400 is read
    with RawClient(server.port) as client:  # and it serves on
        client.handshake()
    assert server.log().count("Traceback") == before, server.log()[-3000:]


@pytest.mark.timeout(30)
def test_a_close_reason_that_is_not_utf8_gets_1007(server: GunicornServer) -> None:
    with RawClient(server.port) as client:
        client.handshake()
        client.send_frame(OP_CLOSE, b"\x03\xe8\xff\xfe")
        frame = client.expect_close()
        assert frame.close_code == 1007
    assert "Traceback" not in server.log()


@pytest.mark.timeout(30)
def test_a_client_over_the_message_rate_is_closed_with_1008(start_server: ServerFactory) -> None:
    limited = start_server("tests.apps.routes:app", WS_MAX_MESSAGES_PER_SECOND="5")
    with RawClient(limited.port) as client:
        client.handshake()
        for number in range(20):
            client.send_frame(OP_TEXT, f"m{number}".encode())
        echoed = []
        while True:
            frame = client.read_frame()
            assert frame is not None, "EOF before a close frame"
            if frame.opcode == OP_CLOSE:
                break
            echoed.append(frame.payload)
        assert (frame.close_code, frame.close_reason) == (1008, "over 5 messages per second")
        assert echoed == [f"m{number}".encode() for number in range(5)], "the burst of one second's worth was served"
    log = limited.log()
    assert "ws.limit path=/ws" in log and "Traceback" not in log


def worker_pid(server: GunicornServer) -> int:
    """The pid of the server's one worker (the master's child)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    wait_until(lambda: children.read_text().split(), "the worker never started")
    found = children.read_text().split()
    assert len(found) == 1, found
    return int(found[0])


def rss_kib(pid: int) -> int:
    """The resident set of ``pid`` in KiB (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def never_reads_the_firehose(server: GunicornServer, tls: ssl.SSLContext | None = None) -> float:
    """Open /firehose and read nothing until the server gives up on us; the seconds that took."""
    with RawClient(server.port, tls=tls) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once: nothing is read
        started = time.monotonic()
        client.handshake("/firehose")
        wait_until(lambda: "firehose ended" in server.log(), "the handler never gave up on a client that reads nothing")
        return time.monotonic() - started


@pytest.mark.timeout(60)
def test_a_client_that_never_reads_is_cut_after_send_timeout(start_server: ServerFactory) -> None:
    server = start_server("tests.apps.routes:app", WS_SEND_TIMEOUT="0.5")
    never_reads_the_firehose(server)
    log = server.log()
    reason = "the client read nothing for 0.5 s"
    assert f"firehose ended: ConnectionClosedError code=1006 reason='{reason}'" in log, log[-3000:]
    assert log.count("ws.timeout path=/firehose peer=127.0.0.1:") == 1 and f": {reason}; closing TCP (1006)" in log
    wait_until(lambda: "ws.close path=/firehose" in server.log(), "the connection was never finished")
    assert f"code=1006 reason='{reason}'" in server.log() and "Traceback" not in server.log()
    with RawClient(server.port) as other:  # and it serves on
        other.handshake()
        other.send_frame(OP_TEXT, b"still here")
        assert other.read_message() == (OP_TEXT, b"still here")


@pytest.mark.timeout(60)
def test_send_timeout_applies_over_tls_too(start_server: ServerFactory, certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server = start_server("tests.apps.routes:app", WS_SEND_TIMEOUT="0.5", WSGI_WS_CERTFILE=cert, WSGI_WS_KEYFILE=key)
    never_reads_the_firehose(server, ssl.create_default_context(cafile=cert))
    log = server.log()
    assert "firehose ended: ConnectionClosedError code=1006 reason='the client read nothing for 0.5 s'" in log, log[-3000:]
    assert log.count("ws.timeout path=/firehose") == 1 and "Traceback" not in log


PINGS = 100_000


@pytest.mark.timeout(120)
def test_a_ping_flood_from_a_client_that_never_reads_is_bounded(server: GunicornServer) -> None:
    """100,000 pings, nothing read meanwhile: a bounded number of pongs, the last for the last ping; RSS flat."""
    pid = worker_pid(server)
    pings = [encode_frame(OP_PING, b"%08d" % n) for n in range(PINGS)]
    with RawClient(server.port) as flooder, RawClient(server.port) as other:
        flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # holds every pong it might be sent
        flooder.handshake()
        other.handshake()
        warm_up = encode_frame(OP_PING, b"warm-up") * (PINGS // 10)
        for _ in range(10):  # a first flood: the worker's heap grows to what a flood needs, once
            flooder.send(warm_up)
        read_pongs_until_echo(flooder, b"warmed")  # every warm-up ping was handled
        before = rss_kib(pid)
        for start in range(0, PINGS, PINGS // 10):
            flooder.send(b"".join(pings[start : start + PINGS // 10]))  # never blocks: the server keeps reading
            echo(other, b"%d" % start)  # and the others are served meanwhile
        pongs = read_pongs_until_echo(flooder, b"done")  # read only now
        after = rss_kib(pid)
    assert pongs[-1] == b"%08d" % (PINGS - 1), "the last pong answers the last ping"
    assert pongs == sorted(pongs), "pongs in the order of their pings"
    assert len(pongs) < PINGS // 4, f"{len(pongs)} pongs for {PINGS} pings: not coalesced"
    assert after - before < 2048, f"RSS grew {after - before} KiB during the flood ({before} -> {after} KiB)"
    print(f"ping flood: {PINGS} pings, {len(pongs)} pongs, worker RSS {before} -> {after} KiB")
    assert "Traceback" not in server.log()


def read_pongs_until_echo(client: RawClient, payload: bytes) -> list[bytes]:
    """Send ``payload`` as text; read the pongs before its echo (which comes once every earlier ping was handled)."""
    client.send_frame(OP_TEXT, payload)
    pongs = []
    while (frame := client.read_frame()) is not None and frame.opcode == OP_PONG:
        pongs.append(frame.payload)
    assert frame is not None and (frame.opcode, frame.payload) == (OP_TEXT, payload), frame
    return pongs


def echo(client: RawClient, payload: bytes) -> None:
    """One round trip on ``client``, within TIMEOUT."""
    started = time.monotonic()
    client.send_frame(OP_TEXT, payload)
    assert client.read_message() == (OP_TEXT, payload)
    assert time.monotonic() - started < TIMEOUT
