"""The I/O-free session: frames in, messages and close codes out; every case also fed one byte at a time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, close_payload, encode_frame
from wsgi_ws.exceptions import ConnectionClosed
from wsgi_ws.protocol import Session


def feed(data: bytes, byte_by_byte: bool, max_size: int | None = 1 << 20) -> Session:
    session = Session(max_size)
    if byte_by_byte:
        for index in range(len(data)):
            session.receive_data(data[index : index + 1])
    else:
        session.receive_data(data)
    return session


MESSAGES = [
    ("empty text", encode_frame(OP_TEXT, b""), [""]),
    ("empty binary", encode_frame(OP_BINARY, b""), [b""]),
    ("text", encode_frame(OP_TEXT, "héllo".encode()), ["héllo"]),
    ("binary 16-bit length", encode_frame(OP_BINARY, b"\x01" * 300), [b"\x01" * 300]),
    ("binary 64-bit length", encode_frame(OP_BINARY, b"\x02" * 70000), [b"\x02" * 70000]),
    ("7-bit payload in 16-bit field", encode_frame(OP_BINARY, b"ab", length=126), [b"ab"]),
    ("7-bit payload in 64-bit field", encode_frame(OP_BINARY, b"ab", length=127), [b"ab"]),
    (
        "fragmented text",
        encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_CONT, b"b", fin=False) + encode_frame(OP_CONT, b"c"),
        ["abc"],
    ),
    ("fragmented binary", encode_frame(OP_BINARY, b"a", fin=False) + encode_frame(OP_CONT, b"") + encode_frame(OP_TEXT, b"z"), [b"a", "z"]),
    ("ping between fragments", encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_PING, b"p") + encode_frame(OP_CONT, b"b"), ["ab"]),
    (
        "euro sign split",
        encode_frame(OP_TEXT, b"\xe2", fin=False) + encode_frame(OP_CONT, b"\x82", fin=False) + encode_frame(OP_CONT, b"\xac"),
        ["€"],
    ),
    ("two messages", encode_frame(OP_TEXT, b"1") + encode_frame(OP_BINARY, b"2"), ["1", b"2"]),
]


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize(("name", "data", "expected"), MESSAGES, ids=[case[0] for case in MESSAGES])
def test_messages_are_reassembled_with_their_types(name: str, data: bytes, expected: list[str | bytes], byte_by_byte: bool) -> None:
    session = feed(data, byte_by_byte)
    assert list(session.messages) == expected
    assert [type(message) for message in session.messages] == [type(message) for message in expected]
    assert not session.receive_done


FAILURES = [
    ("unmasked", encode_frame(OP_TEXT, b"x", mask=False), 1002),
    ("rsv1", encode_frame(OP_TEXT, b"x", rsv=4), 1002),
    ("opcode 3", encode_frame(3, b""), 1002),
    ("long ping", encode_frame(OP_PING, b"x" * 126), 1002),
    ("fragmented close", encode_frame(OP_CLOSE, b"", fin=False), 1002),
    ("orphan continuation", encode_frame(OP_CONT, b"x"), 1002),
    ("bad close code", encode_frame(OP_CLOSE, close_payload(1005)), 1002),
    ("one-byte close", encode_frame(OP_CLOSE, b"\x03"), 1002),
    ("bad utf-8", encode_frame(OP_TEXT, b"\xff"), 1007),
    ("bad utf-8 first fragment", encode_frame(OP_TEXT, b"\xff", fin=False), 1007),
    ("bad utf-8 close reason", encode_frame(OP_CLOSE, close_payload(1000) + b"\xc3"), 1007),
    ("too big", encode_frame(OP_BINARY, b"x" * 1001), 1009),
    ("too big in fragments", encode_frame(OP_BINARY, b"x" * 600, fin=False) + encode_frame(OP_CONT, b"x" * 600), 1009),
]


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize(("name", "data", "code"), FAILURES, ids=[case[0] for case in FAILURES])
def test_violations_fail_with_their_close_code(name: str, data: bytes, code: int, byte_by_byte: bool) -> None:
    session = feed(data, byte_by_byte, max_size=1000)
    assert session.receive_done
    assert session.close_code == code
    out = session.data_to_send()
    assert out[-1] == b"", "a failing server half-closes TCP"
    assert out[0][0] == 0x88 and int.from_bytes(out[0][2:4], "big") == code


def test_close_is_echoed_and_reported() -> None:
    session = feed(encode_frame(OP_CLOSE, close_payload(4001, "bye")), False)
    assert session.receive_done and (session.close_code, session.close_reason) == (4001, "bye")
    out = session.data_to_send()
    assert out == [b"\x88\x05" + close_payload(4001, "bye"), b""]


def test_close_inside_fragmented_message_is_answered_normally() -> None:
    """RFC 6455 §5.4 allows a control frame, close included, between fragments (Autobahn 7.1.5)."""
    session = feed(encode_frame(OP_TEXT, b"part", fin=False) + encode_frame(OP_CLOSE, close_payload(1000)), False)
    assert session.close_code == 1000
    assert list(session.messages) == []


def test_ping_is_answered_with_pong() -> None:
    session = feed(encode_frame(OP_PING, b"abc"), False)
    assert session.data_to_send() == [b"\x8a\x03abc"]


def test_pongs_are_counted() -> None:
    session = feed(encode_frame(OP_PONG, b"") * 3, False)
    assert session.pongs_received == 3


def test_eof_without_close_is_1006() -> None:
    session = feed(encode_frame(OP_TEXT, b"x"), False)
    session.receive_eof()
    assert session.receive_done and session.close_code == 1006
    assert list(session.messages) == ["x"]


@pytest.mark.parametrize(
    ("message", "binary", "frame"),
    [
        ("hi", None, b"\x81\x02hi"),
        (b"hi", None, b"\x82\x02hi"),
        (bytearray(b"hi"), None, b"\x82\x02hi"),
        (memoryview(b"hi"), None, b"\x82\x02hi"),
        ("hi", True, b"\x82\x02hi"),
        (b"hi", False, b"\x81\x02hi"),
        ("", None, b"\x81\x00"),
        ("x" * 126, None, b"\x81\x7e\x00\x7e" + b"x" * 126),
    ],
)
def test_send_message_frames(message: str | bytes, binary: bool | None, frame: bytes) -> None:
    session = Session(None)
    session.send_message(message, binary)
    assert session.data_to_send() == [frame]


def test_send_text_frame_from_invalid_utf8_bytes_is_refused() -> None:
    with pytest.raises(UnicodeDecodeError):
        Session(None).send_message(b"\xff", binary=False)


def test_send_after_close_raises_connection_closed_with_code() -> None:
    session = Session(None)
    session.send_close(4000, "done")
    with pytest.raises(ConnectionClosed) as caught:
        session.send_message("late")
    assert caught.value.close_code == 4000


@pytest.mark.parametrize(("code", "reason"), [(999, ""), (1005, ""), (1000, "x" * 124)])
def test_send_close_rejects_invalid_code_or_long_reason(code: int, reason: str) -> None:
    with pytest.raises(ValueError):
        Session(None).send_close(code, reason)


def test_ping_payload_limit() -> None:
    with pytest.raises(ValueError):
        Session(None).send_ping(b"x" * 126)


I_O_FREE = ["protocol.py", "handshake.py", "origins.py", "options.py"]


@pytest.mark.parametrize("module", I_O_FREE)
def test_protocol_layer_imports_no_io_library(module: str) -> None:
    tree = ast.parse((Path(__file__).parent.parent / "wsgi_ws" / module).read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not names & {"socket", "gevent", "flask", "gunicorn", "threading", "select"}
