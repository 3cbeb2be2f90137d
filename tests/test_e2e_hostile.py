"""Hostile input at the edges (issue 16): each gets its documented answer, never a traceback or a hang.

Request heads over gunicorn's limits (a 10,000-parameter ``Sec-WebSocket-Extensions`` offer on one line, thousands
of headers, a 100 KB header) are answered 400 before any upgrade (or, as the server closes with the rest of the head
unread, a TCP reset may overtake it); a close reason that is not UTF-8 gets 1007; a client over
``max_messages_per_second`` gets 1008.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ServerFactory
from tests.server import GunicornServer
from tests.wsclient import OP_CLOSE, OP_TEXT, RawClient, upgrade_request

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
