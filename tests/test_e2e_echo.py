"""End to end: the sample echo app under gunicorn, driven by the `websockets` and `websocket-client` clients."""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, upgrade_request

pytestmark = pytest.mark.e2e

SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024]


@pytest.mark.parametrize("size", SIZES)
def test_text_and_binary_of_every_length_class_are_echoed_as_sent(echo_server: GunicornServer, size: int) -> None:
    text = ("é" * size)[: size // 2] + "a" * (size - 2 * (size // 2))  # multi-byte characters, `size` bytes
    assert len(text.encode()) == size
    binary = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with connect(f"{echo_server.url}/ws", max_size=None, open_timeout=TIMEOUT) as ws:
        ws.send(text)
        reply = ws.recv(timeout=TIMEOUT)
        assert type(reply) is str and reply == text
        ws.send(binary)
        reply = ws.recv(timeout=TIMEOUT)
        assert type(reply) is bytes and reply == binary


def test_message_over_the_limit_closes_with_1009(echo_server: GunicornServer) -> None:
    with connect(f"{echo_server.url}/ws", max_size=None, open_timeout=TIMEOUT) as ws:
        ws.send(b"x" * (1024 * 1024 + 1))
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(timeout=TIMEOUT)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


def test_fragmented_messages_are_reassembled(echo_server: GunicornServer) -> None:
    with connect(f"{echo_server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send(iter(["frag", "men", "ted ✓"]))
        assert ws.recv(timeout=TIMEOUT) == "fragmented ✓"
        ws.send(iter([b"\x00\x01", b"", b"\x02"]))
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01\x02"


@pytest.mark.parametrize("split", range(1, 10))
def test_multibyte_text_split_across_fragments_at_every_byte(echo_server: GunicornServer, split: int) -> None:
    payload = "ü€😀".encode()  # 2 + 3 + 4 bytes
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, payload[:split], fin=False)
        client.send_frame(OP_PING, b"between")  # answered even between fragments
        client.send_frame(OP_CONT, payload[split:], fin=True)
        pong = client.read_frame()
        assert pong is not None and pong.opcode == OP_PONG and pong.payload == b"between"
        assert client.read_message() == (OP_TEXT, payload)


def test_client_close_code_and_reason_are_echoed(echo_server: GunicornServer) -> None:
    with connect(f"{echo_server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        ws.close(4001, "done here")
    assert ws.protocol.close_rcvd is not None
    assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4001, "done here")


def test_websocket_client_library_echoes_text_binary_and_close(echo_server: GunicornServer) -> None:
    ws = websocket.create_connection(f"{echo_server.url}/ws", timeout=TIMEOUT)
    try:
        ws.send("plain text")
        assert ws.recv() == "plain text"
        ws.send_binary(b"\xff\x00binary")
        opcode, data = ws.recv_data()
        assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\xff\x00binary")
        ws.send_close(status=3000, reason=b"bye")
        frame = ws.recv_frame()  # type: ignore[no-untyped-call]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert frame.data == (3000).to_bytes(2, "big") + b"bye"
    finally:
        ws.shutdown()  # type: ignore[no-untyped-call]


def test_hundred_clients_each_echo_hundred_messages(echo_server: GunicornServer) -> None:
    failures: list[str] = []
    barrier = threading.Barrier(100, timeout=3 * TIMEOUT)

    def client(index: int) -> None:
        try:
            with connect(f"{echo_server.url}/ws", open_timeout=3 * TIMEOUT) as ws:
                barrier.wait()
                for number in range(100):
                    message = f"client {index} message {number} " + "x" * (index * number % 300)
                    ws.send(message if number % 2 else message.encode())
                    reply = ws.recv(timeout=3 * TIMEOUT)
                    if reply != (message if number % 2 else message.encode()):
                        failures.append(f"{index}/{number}: {reply!r}")
                        return
        except Exception as exc:
            failures.append(f"{index}: {exc!r}")

    threads = [threading.Thread(target=client, args=(index,)) for index in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=6 * TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


def test_stats_endpoint_counts_connections_messages_and_bytes(start_server: ServerFactory) -> None:
    server = start_server("app:app")
    with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("12345")
        assert ws.recv(timeout=TIMEOUT) == "12345"
        with urllib.request.urlopen(f"{server.http_url}/stats", timeout=TIMEOUT) as response:
            live = json.load(response)
        assert (live["open"], live["accepted"], live["messages_in"], live["messages_out"]) == (1, 1, 1, 1)
        assert live["bytes_in"] > 5 and live["bytes_out"] == 7  # a 2-byte header and the 5-byte payload
    with RawClient(server.port) as client:  # a refused one
        client.send(upgrade_request(headers={"Sec-WebSocket-Version": "7"}))
        assert client.read_response().status == 426
    with urllib.request.urlopen(f"{server.http_url}/stats", timeout=TIMEOUT) as response:
        after = json.load(response)
    assert (after["open"], after["closed"], after["refused"], after["messages_in"]) == (0, 1, 1, 1)
    log = server.log()
    assert "ws.accept path=/ws peer=127.0.0.1:" in log
    assert "ws.close path=/ws peer=127.0.0.1:" in log and "code=1000" in log and "messages_in=1 messages_out=1" in log
    assert re.search(r"ws.refuse path=/ws peer=127\.0\.0\.1:\d+ status=426 reason=\"unsupported Sec-WebSocket-Version '7'; ", log), log
