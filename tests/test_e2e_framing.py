"""End to end over raw sockets: every protocol violation gets its exact close code (RFC 6455 §7.4.1)."""

from __future__ import annotations

import pytest

from tests.server import GunicornServer
from tests.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, close_payload, encode_frame

# (name, bytes sent after the handshake, expected close code)
VIOLATIONS: list[tuple[str, bytes, int]] = [
    ("unmasked client frame", encode_frame(OP_TEXT, b"hi", mask=False), 1002),
    *[(f"RSV bits {rsv:03b} without extension", encode_frame(OP_TEXT, b"hi", rsv=rsv), 1002) for rsv in range(1, 8)],
    *[(f"reserved opcode {op:#x}", encode_frame(op, b""), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
    ("ping of 126 bytes", encode_frame(OP_PING, b"x" * 126), 1002),
    ("close of 126 bytes", encode_frame(OP_CLOSE, close_payload(1000, "x" * 124)), 1002),
    ("fragmented ping", encode_frame(OP_PING, b"a", fin=False) + encode_frame(OP_CONT, b"b"), 1002),
    ("continuation without start", encode_frame(OP_CONT, b"orphan"), 1002),
    ("text inside fragmented message", encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_TEXT, b"b"), 1002),
    ("binary inside fragmented message", encode_frame(OP_BINARY, b"a", fin=False) + encode_frame(OP_BINARY, b"b"), 1002),
    ("close payload of 1 byte", encode_frame(OP_CLOSE, b"\x03"), 1002),
    *[
        (f"invalid close code {code}", encode_frame(OP_CLOSE, close_payload(code)), 1002)
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
    ],
    ("invalid UTF-8 in text", encode_frame(OP_TEXT, b"\xff\xfe"), 1007),
    ("overlong UTF-8 encoding", encode_frame(OP_TEXT, b"\xc0\xaf"), 1007),
    ("UTF-16 surrogate in UTF-8", encode_frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    ("code point above U+10FFFF", encode_frame(OP_TEXT, b"\xf4\x90\x80\x80"), 1007),
    ("truncated UTF-8 at message end", encode_frame(OP_TEXT, b"ok\xe2\x82"), 1007),
    ("truncated UTF-8 at end of fragmented message", encode_frame(OP_TEXT, b"ok", fin=False) + encode_frame(OP_CONT, b"\xe2\x82"), 1007),
    ("invalid UTF-8 in close reason", encode_frame(OP_CLOSE, close_payload(1000) + b"\xff"), 1007),
    ("single frame over 1 MiB", encode_frame(OP_BINARY, b"x" * (1024 * 1024 + 1)), 1009),
    (
        "fragments adding up to over 1 MiB",
        encode_frame(OP_BINARY, b"x" * (600 * 1024), fin=False) + encode_frame(OP_CONT, b"x" * (600 * 1024)),
        1009,
    ),
]


@pytest.mark.parametrize(("name", "data", "code"), VIOLATIONS, ids=[case[0] for case in VIOLATIONS])
def test_violation_closes_with_exact_code(echo_server: GunicornServer, name: str, data: bytes, code: int) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send(data)
        assert client.expect_close().close_code == code


def test_invalid_utf8_fails_fast_on_the_first_fragment(echo_server: GunicornServer) -> None:
    """The server closes with 1007 as soon as a fragment is invalid, without waiting for the message's end."""
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, b"valid then \xff", fin=False)
        assert client.expect_close().close_code == 1007


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes_are_echoed(echo_server: GunicornServer, code: int) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_CLOSE, close_payload(code, "reason ✓"))
        frame = client.expect_close()
        assert (frame.close_code, frame.close_reason) == (code, "reason ✓")


def test_empty_close_is_answered_with_empty_close(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_CLOSE, b"")
        assert client.expect_close().payload == b""


def test_ping_is_answered_with_pong_of_same_payload(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        for payload in (b"", b"p", b"x" * 125):
            client.send_frame(OP_PING, payload)
            frame = client.read_frame()
            assert frame is not None and (frame.opcode, frame.payload) == (OP_PONG, payload)


def test_unsolicited_pong_is_ignored(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_PONG, b"unasked")
        client.send_frame(OP_TEXT, b"still here")
        assert client.read_message() == (OP_TEXT, b"still here")


def test_bytes_after_close_are_never_parsed_as_http(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_CLOSE, close_payload(1000)) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        frame = client.expect_close()  # asserts EOF right after: no HTTP response follows
        assert frame.close_code == 1000


def test_server_frames_are_unmasked_and_final(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_BINARY, b"abc")
        frame = client.read_frame()
        assert frame is not None and not frame.masked and frame.fin and frame.rsv == 0


def test_client_vanishing_mid_frame_leaves_server_serving(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_BINARY, b"x" * 1000)[:500])
    with RawClient(echo_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, b"next")
        assert client.read_message() == (OP_TEXT, b"next")
