"""permessage-deflate (RFC 7692) end to end, with real clients and raw frames (negotiation alone: test_negotiation.py)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_BINARY, OP_CONT, OP_TEXT, RawClient, encode_frame, upgrade_request

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deflate_server() -> Iterator[GunicornServer]:
    server = GunicornServer("tests.apps.routes:app", env={"WS_COMPRESSION": "true", "WS_MAX_MESSAGE_SIZE": "1MiB"})
    yield server
    server.stop()


def test_websockets_client_negotiates_and_echoes_compressed(deflate_server: GunicornServer) -> None:
    with connect(f"{deflate_server.url}/ws", compression="deflate", max_size=None, open_timeout=TIMEOUT) as ws:
        assert [extension.name for extension in ws.protocol.extensions] == ["permessage-deflate"]
        for message in ("hello " * 1000, b"\x00\x01" * 30000, "", "ü€😀" * 100):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message


def test_client_without_compression_still_works(deflate_server: GunicornServer) -> None:
    with connect(f"{deflate_server.url}/ws", compression=None, open_timeout=TIMEOUT) as ws:
        assert ws.protocol.extensions == []
        ws.send("plain")
        assert ws.recv(timeout=TIMEOUT) == "plain"


def test_compressed_message_inflating_past_the_limit_closes_with_1009(deflate_server: GunicornServer) -> None:
    bomb = b"\x00" * (8 * 1024 * 1024)  # compresses to about 8 KiB; inflates to 8x max_message_size
    with connect(f"{deflate_server.url}/ws", compression="deflate", max_size=None, open_timeout=TIMEOUT) as ws:
        ws.send(bomb)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009


def compress_message(data: bytes, compressor: zlib._Compress) -> bytes:
    """One message compressed as RFC 7692 §7.2.1 says: sync flush, without the trailing 00 00 ff ff."""
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def deflate_client(server: GunicornServer, path: str = "/ws") -> tuple[RawClient, zlib._Compress, zlib._Decompress]:
    client = RawClient(server.port)
    client.send(upgrade_request(path, headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}))
    response = client.read_response()
    assert response.status == 101
    assert response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
    return client, zlib.compressobj(wbits=-12), zlib.decompressobj(wbits=-12)


def test_raw_compressed_frames_fragmented_and_whole(deflate_server: GunicornServer) -> None:
    client, compressor, decompressor = deflate_client(deflate_server)
    with client:
        body = compress_message(b"fragmented " * 200, compressor)
        half = len(body) // 2
        client.send(encode_frame(OP_TEXT, body[:half], fin=False, rsv=4) + encode_frame(OP_CONT, body[half:]))
        frame = client.read_frame()
        assert frame is not None and frame.opcode == OP_TEXT and frame.rsv == 4, "the reply is compressed (RSV1)"
        assert decompressor.decompress(frame.payload + b"\x00\x00\xff\xff") == b"fragmented " * 200
        client.send_frame(OP_BINARY, b"uncompressed is fine too")  # RSV1 clear: RFC 7692 lets each message choose
        frame = client.read_frame()
        assert frame is not None and decompressor.decompress(frame.payload + b"\x00\x00\xff\xff") == b"uncompressed is fine too"


def test_rsv1_on_a_continuation_frame_is_1002(deflate_server: GunicornServer) -> None:
    client, compressor, _ = deflate_client(deflate_server)
    with client:
        body = compress_message(b"abc", compressor)
        client.send(encode_frame(OP_TEXT, body, fin=False, rsv=4) + encode_frame(OP_CONT, b"", rsv=4))
        assert client.expect_close().close_code == 1002


def test_corrupt_deflate_data_is_1007(deflate_server: GunicornServer) -> None:
    client, _, _ = deflate_client(deflate_server)
    with client:
        client.send_frame(OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv=4)
        assert client.expect_close().close_code == 1002  # websockets reports a zlib error as a protocol error


def test_per_message_opt_out_sends_uncompressed(deflate_server: GunicornServer) -> None:
    client, _, decompressor = deflate_client(deflate_server, "/mixed-compression")
    with client:
        first, second = client.read_frame(), client.read_frame()
        assert first is not None and first.rsv == 4
        assert decompressor.decompress(first.payload + b"\x00\x00\xff\xff") == b"compressed " * 50
        assert second is not None and second.rsv == 0 and second.payload == b"raw " * 50


def test_malformed_extensions_header_is_400(deflate_server: GunicornServer) -> None:
    with RawClient(deflate_server.port) as client:
        client.send(upgrade_request("/ws", headers={"Sec-WebSocket-Extensions": "permessage-deflate; =;"}))
        assert client.read_response().status == 400


def test_bad_offer_end_to_end_is_declined_and_the_connection_works(deflate_server: GunicornServer) -> None:
    with RawClient(deflate_server.port) as client:
        client.send(upgrade_request("/ws", headers={"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=99"}))
        response = client.read_response()
        assert response.status == 101 and "sec-websocket-extensions" not in response.headers
        client.send_frame(OP_TEXT, b"uncompressed")
        assert client.read_message() == (OP_TEXT, b"uncompressed")
