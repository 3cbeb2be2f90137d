"""Garbage after a real handshake (hypothesis): every stream ends with a valid close code or EOF, nothing leaks."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_CLOSE, OP_CONT, OP_TEXT, RawClient, encode_frame

pytestmark = pytest.mark.e2e

VALID_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} | set(range(3000, 5000))


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[GunicornServer]:
    """Short keep-alive times, so a connection left waiting for the rest of a frame is closed quickly."""
    server = GunicornServer("tests.apps.routes:app", env={"WS_KEEP_ALIVE_INTERVAL": "0.2", "WS_KEEP_ALIVE_TIMEOUT": "0.2"})
    yield server
    server.stop()


def stats(server: GunicornServer) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.http_url}/stats", timeout=TIMEOUT) as response:
        return dict(json.load(response))


def end_of_connection(client: RawClient) -> int | None:
    """Read until the server ends the connection; the close code it sent, or None if it only closed TCP."""
    code = None
    while True:
        try:
            frame = client.read_frame()
        except ConnectionResetError:
            return code
        if frame is None:
            return code
        if frame.opcode == OP_CLOSE:
            code = frame.close_code if frame.payload else 1005


garbage_streams = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from([encode_frame(OP_TEXT, b"ok"), encode_frame(OP_CONT, b"x"), b"\x81\x85", b"\xff"]), max_size=6).map(b"".join),
    st.builds(lambda frame, junk: frame + junk, st.sampled_from([encode_frame(OP_TEXT, b"hi", fin=False)]), st.binary(max_size=50)),
)


def test_garbage_after_the_handshake_always_ends_cleanly_and_leaks_nothing(fuzz_server: GunicornServer) -> None:
    with RawClient(fuzz_server.port, timeout=TIMEOUT) as client:  # warm up: the metrics' files of /ws, opened once
        client.handshake("/ws")
    with urllib.request.urlopen(f"{fuzz_server.http_url}/metrics", timeout=TIMEOUT) as response:
        assert b'wsgi_ws_connections_accepted_total{route="/ws"}' in response.read()
    before = stats(fuzz_server)
    outcomes: list[int | None] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(garbage_streams)
    def one(garbage: bytes) -> None:
        with RawClient(fuzz_server.port, timeout=TIMEOUT) as client:
            client.handshake("/ws")
            client.send(garbage)
            started = time.monotonic()
            code = end_of_connection(client)  # never hangs: keep-alive ends a connection left waiting
            assert time.monotonic() - started < TIMEOUT
            assert code is None or code in VALID_CLOSE_CODES | {1005}, code
            outcomes.append(code)

    one()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # the server's last teardown may finish just after our EOF
        after = stats(fuzz_server)
        if after == before:
            break
        time.sleep(0.05)
    assert after["open_websockets"] == 0
    assert after["greenlets"] <= before["greenlets"], (before, after)
    assert after["fds"] <= before["fds"], (before, after)
    assert len(outcomes) >= 30
