"""The conformance suite: the Autobahn TestSuite's categories against the real gunicorn server, over raw sockets.

Each case asserts the exact server behaviour: the echoed payload, the close code (RFC 6455 §7.4.1), or the dropped
connection. Compression (categories 12 and 13) is in ``tests/test_compression.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, close_payload, encode_frame

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def conformance_server(echo_server: GunicornServer) -> GunicornServer:
    """The sample echo app with the default options (1 MiB messages)."""
    return echo_server


@pytest.fixture(scope="module")
def big_server() -> Iterator[GunicornServer]:
    """The sample echo app allowing 16 MiB messages, as Autobahn's category 9 needs."""
    server = GunicornServer("app:app", env={"WS_MAX_MESSAGE_SIZE": "16MiB"})
    yield server
    server.stop()


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
def test_violation_closes_with_exact_code(conformance_server: GunicornServer, name: str, data: bytes, code: int) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(data)
        assert client.expect_close().close_code == code


def test_invalid_utf8_fails_fast_on_the_first_fragment(conformance_server: GunicornServer) -> None:
    """The server closes with 1007 as soon as a fragment is invalid, without waiting for the message's end."""
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, b"valid then \xff", fin=False)
        assert client.expect_close().close_code == 1007


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes_are_echoed(conformance_server: GunicornServer, code: int) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_CLOSE, close_payload(code, "reason ✓"))
        frame = client.expect_close()
        assert (frame.close_code, frame.close_reason) == (code, "reason ✓")


def test_empty_close_is_answered_with_empty_close(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_CLOSE, b"")
        assert client.expect_close().payload == b""


def test_ping_is_answered_with_pong_of_same_payload(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        for payload in (b"", b"p", b"x" * 125):
            client.send_frame(OP_PING, payload)
            frame = client.read_frame()
            assert frame is not None and (frame.opcode, frame.payload) == (OP_PONG, payload)


def test_unsolicited_pong_is_ignored(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_PONG, b"unasked")
        client.send_frame(OP_TEXT, b"still here")
        assert client.read_message() == (OP_TEXT, b"still here")


def test_bytes_after_close_are_never_parsed_as_http(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_CLOSE, close_payload(1000)) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        frame = client.expect_close()  # asserts EOF right after: no HTTP response follows
        assert frame.close_code == 1000


def test_server_frames_are_unmasked_and_final(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_BINARY, b"abc")
        frame = client.read_frame()
        assert frame is not None and not frame.masked and frame.fin and frame.rsv == 0


def test_client_vanishing_mid_frame_leaves_server_serving(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_BINARY, b"x" * 1000)[:500])
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, b"next")
        assert client.read_message() == (OP_TEXT, b"next")


# --- The Autobahn TestSuite's categories, case by case against the real server ---------------------------------

# 1. Framing: every length encoding, whole and chopped into small writes.


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("size", [0, 125, 126, 127, 128, 65535, 65536, 65537, 1 << 20])
@pytest.mark.parametrize("chop", [None, 997], ids=["whole", "chopped-997"])
def test_1_framing_lengths_echo(conformance_server: GunicornServer, opcode: int, size: int, chop: int | None) -> None:
    payload = b"*" * size
    with RawClient(conformance_server.port) as client:
        client.handshake()
        data = encode_frame(opcode, payload)
        for start in range(0, len(data), chop or len(data) or 1):
            client.send(data[start : start + (chop or len(data))])
        assert client.read_message() == (opcode, payload)


# 2. Pings and pongs.


@pytest.mark.parametrize("payload", [b"", b"\x00\xff" * 62 + b"!", b"Hello, World!"], ids=["empty", "125-binary", "text"])
def test_2_ping_gets_pong_with_same_payload(conformance_server: GunicornServer, payload: bytes) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_PING, payload)
        frame = client.read_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (OP_PONG, payload)


def test_2_ten_pings_in_one_write_get_ten_pongs(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(b"".join(encode_frame(OP_PING, f"ping {n}".encode()) for n in range(10)))
        for n in range(10):
            frame = client.read_frame()
            assert frame is not None and (frame.opcode, frame.payload) == (OP_PONG, f"ping {n}".encode())


def test_2_ping_sent_byte_by_byte(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        for byte in encode_frame(OP_PING, b"slowly"):
            client.send(bytes([byte]))
        frame = client.read_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (OP_PONG, b"slowly")


# 3 and 4. Reserved bits and opcodes after a valid message: the valid message is echoed, then 1002.


@pytest.mark.parametrize(
    "bad", [encode_frame(OP_TEXT, b"x", rsv=r) for r in range(1, 8)] + [encode_frame(op, b"") for op in (3, 7, 0xB, 0xF)]
)
def test_3_4_violation_after_a_valid_message_in_its_own_write(conformance_server: GunicornServer, bad: bytes) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, b"valid first")
        assert client.read_message() == (OP_TEXT, b"valid first")
        client.send(bad)
        assert client.expect_close().close_code == 1002


# 5. Fragmentation.

TEXT = "Fragmentation ✓ across frames"


@pytest.mark.parametrize("pieces", [1, 2, 3, 7, len(TEXT.encode())])
def test_5_text_in_n_fragments_with_pings_between(conformance_server: GunicornServer, pieces: int) -> None:
    data = TEXT.encode()
    cuts = [len(data) * i // pieces for i in range(pieces + 1)]
    with RawClient(conformance_server.port) as client:
        client.handshake()
        for index in range(pieces):
            opcode = OP_TEXT if index == 0 else OP_CONT
            client.send_frame(opcode, data[cuts[index] : cuts[index + 1]], fin=index == pieces - 1)
            if index < pieces - 1:
                client.send_frame(OP_PING, str(index).encode())
        for index in range(pieces - 1):
            frame = client.read_frame()
            assert frame is not None and (frame.opcode, frame.payload) == (OP_PONG, str(index).encode())
        assert client.read_message() == (OP_TEXT, data)


def test_5_fragments_of_zero_length(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_TEXT, b"", fin=False) + encode_frame(OP_CONT, b"", fin=False) + encode_frame(OP_CONT, b""))
        assert client.read_message() == (OP_TEXT, b"")


FRAGMENT_VIOLATIONS = {
    "continuation first, fin": encode_frame(OP_CONT, b"x"),
    "continuation first, not fin": encode_frame(OP_CONT, b"x", fin=False) + encode_frame(OP_TEXT, b"y"),
    "text then new text": encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_TEXT, b"b"),
    "text then binary": encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_BINARY, b"b"),
    "fragmented pong": encode_frame(OP_PONG, b"a", fin=False) + encode_frame(OP_CONT, b"b"),
    "fragmented close": encode_frame(OP_CLOSE, b"", fin=False),
}


@pytest.mark.parametrize("data", FRAGMENT_VIOLATIONS.values(), ids=FRAGMENT_VIOLATIONS.keys())
def test_5_fragmentation_violations_are_1002(conformance_server: GunicornServer, data: bytes) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(data)
        assert client.expect_close().close_code == 1002


# 6. UTF-8: valid text at every split point echoes; invalid text fails with 1007, whole or split anywhere.

VALID_UTF8 = [
    "κόσμε",
    "\u0080\u07ff\u0800\uffff",
    "\U00010000\U0010ffff",
    "\ud7ff\ue000\ufffd\ufeff",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "\x00\x7f",
]
INVALID_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # surrogate inside text
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xf8\x88\x80\x80\x80",
    b"\xfc\x84\x80\x80\x80\x80",
    b"\xc0 ",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xef\xbf",
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_6_valid_utf8_split_at_every_byte_echoes(conformance_server: GunicornServer, text: str) -> None:
    data = text.encode()
    with RawClient(conformance_server.port) as client:
        client.handshake()
        for cut in range(len(data) + 1):
            client.send(encode_frame(OP_TEXT, data[:cut], fin=False) + encode_frame(OP_CONT, data[cut:]))
            assert client.read_message() == (OP_TEXT, data)


@pytest.mark.parametrize("data", INVALID_UTF8, ids=[repr(d) for d in INVALID_UTF8])
def test_6_invalid_utf8_whole_is_1007(conformance_server: GunicornServer, data: bytes) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_TEXT, b"prefix " + data)
        assert client.expect_close().close_code == 1007


@pytest.mark.parametrize("data", INVALID_UTF8, ids=[repr(d) for d in INVALID_UTF8])
def test_6_invalid_utf8_one_byte_per_fragment_is_1007(conformance_server: GunicornServer, data: bytes) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        frames = [encode_frame(OP_TEXT if i == 0 else OP_CONT, data[i : i + 1], fin=i == len(data) - 1) for i in range(len(data))]
        client.send(b"".join(frames))
        assert client.expect_close().close_code == 1007


# 7. Close handling.


def test_7_data_after_close_is_ignored(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_CLOSE, close_payload(1000)) + encode_frame(OP_TEXT, b"late") + encode_frame(OP_PING, b"late"))
        frame = client.expect_close()  # nothing but the close reply, then EOF
        assert frame.close_code == 1000


def test_7_close_with_123_byte_reason_is_echoed(conformance_server: GunicornServer) -> None:
    reason = "r" * 123
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send_frame(OP_CLOSE, close_payload(1000, reason))
        assert client.expect_close().close_reason == reason


def test_7_close_in_the_middle_of_a_fragmented_message_is_answered_normally(conformance_server: GunicornServer) -> None:
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_TEXT, b"frag", fin=False) + encode_frame(OP_CLOSE, close_payload(1000)))
        assert client.expect_close().close_code == 1000


# 9. Limits: up to 16 MiB, text and binary, in frames of many sizes (the server allows 16 MiB here).


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_9_sixteen_mib_in_one_frame(big_server: GunicornServer, opcode: int) -> None:
    payload = b"\x2a" * (16 * 1024 * 1024)
    with RawClient(big_server.port, timeout=3 * TIMEOUT) as client:
        client.handshake()
        client.send_frame(opcode, payload, mask=True)
        assert client.read_message() == (opcode, payload)


@pytest.mark.parametrize("frame_size", [64, 256, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20])
def test_9_four_mib_in_frames_of_many_sizes(big_server: GunicornServer, frame_size: int) -> None:
    payload = bytes(range(256)) * (4 * 4096)
    frames = [
        encode_frame(OP_BINARY if start == 0 else OP_CONT, payload[start : start + frame_size], fin=start + frame_size >= len(payload))
        for start in range(0, len(payload), frame_size)
    ]
    with RawClient(big_server.port, timeout=3 * TIMEOUT) as client:
        client.handshake()
        client.send(b"".join(frames))
        assert client.read_message() == (OP_BINARY, payload)


def test_9_a_thousand_small_messages_in_one_write(big_server: GunicornServer) -> None:
    with RawClient(big_server.port) as client:
        client.handshake()
        client.send(b"".join(encode_frame(OP_TEXT, f"message {n}".encode()) for n in range(1000)))
        for n in range(1000):
            assert client.read_message() == (OP_TEXT, f"message {n}".encode())


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (encode_frame(OP_TEXT, b"x", rsv=2), 1002),
        (encode_frame(5, b""), 1002),
        (encode_frame(OP_TEXT, b"\xff"), 1007),
        (encode_frame(OP_CLOSE, close_payload(4000, "after data")), 4000),
    ],
    ids=["rsv", "opcode", "utf8", "close"],
)
def test_3_4_7_message_and_violation_or_close_in_one_write_echo_first(conformance_server: GunicornServer, bad: bytes, code: int) -> None:
    """Autobahn 3.2, 4.1.3, ...: the message that came before is still answered, then the connection closes."""
    with RawClient(conformance_server.port) as client:
        client.handshake()
        client.send(encode_frame(OP_TEXT, b"first") + encode_frame(OP_BINARY, b"second") + bad)
        assert client.read_message() == (OP_TEXT, b"first")
        assert client.read_message() == (OP_BINARY, b"second")
        assert client.expect_close().close_code == code
