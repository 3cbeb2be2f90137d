"""The I/O-free session: frames in, messages and close codes out; every case also fed one byte at a time."""

from __future__ import annotations

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate

from tests.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, close_payload, encode_frame
from wsgi_ws.protocol import Session
from wsgi_ws.protocol.errors import SessionClosed, UsageError
from wsgi_ws.protocol.session import PONGS_OWED

pytestmark = pytest.mark.unit


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
    assert list(session.assembler.peek()) == expected
    assert [type(message) for message in session.assembler.peek()] == [type(message) for message in expected]
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
    assert list(session.assembler.peek()) == []


def test_ping_is_answered_with_pong() -> None:
    session = feed(encode_frame(OP_PING, b"abc"), False)
    assert session.data_to_send() == [b"\x8a\x03abc"]


# Ping floods (RFC 6455 §5.5.3): at most PONGS_OWED pongs owed; past that the last one owed answers the newest ping.


def pings(first: int, count: int) -> bytes:
    return b"".join(encode_frame(OP_PING, b"%05d" % number) for number in range(first, first + count))


def pong(number: int) -> bytes:
    return b"\x8a\x05" + b"%05d" % number


def test_a_read_of_64_kib_of_pings_owes_a_bounded_number_of_pongs_the_last_for_the_last_ping() -> None:
    flood = pings(0, 6000)
    assert len(flood) > 64 * 1024
    out = feed(flood, False).data_to_send()
    assert len(out) == PONGS_OWED, f"{len(out)} pongs owed"
    assert out == [pong(n) for n in range(PONGS_OWED - 1)] + [pong(5999)]


def test_pongs_owed_over_several_reads_stay_bounded_and_written_ones_are_owed_no_more() -> None:
    session = Session(None)
    for first in range(0, 3000, 1000):  # nothing written in between: still owed
        session.receive_data(pings(first, 1000))
    out = session.data_to_send()
    assert len(out) == PONGS_OWED, f"{len(out)} pongs owed"
    assert out == [pong(n) for n in range(PONGS_OWED - 1)] + [pong(2999)]
    session.receive_data(pings(3000, 3))  # those were written: the next pings are answered one by one again
    assert session.data_to_send() == [pong(3000), pong(3001), pong(3002)]


def test_a_ping_flood_then_a_close_keeps_the_close_after_the_pongs() -> None:
    out = feed(pings(0, 1000) + encode_frame(OP_CLOSE, close_payload(1000)) + pings(1000, 5), False).data_to_send()
    assert len(out) == PONGS_OWED + 2, f"{len(out)} frames"
    assert out == [pong(n) for n in range(PONGS_OWED - 1)] + [pong(999), b"\x88\x02\x03\xe8", b""]


def test_ten_pings_at_once_get_ten_pongs_in_order() -> None:  # Autobahn 2.10
    for byte_by_byte in (False, True):
        assert feed(pings(0, 10), byte_by_byte).data_to_send() == [pong(n) for n in range(10)]


def test_pongs_are_counted() -> None:
    session = feed(encode_frame(OP_PONG, b"") * 3, False)
    assert session.pongs_received == 3


def test_eof_without_close_is_1006() -> None:
    session = feed(encode_frame(OP_TEXT, b"x"), False)
    session.receive_eof()
    assert session.receive_done and session.close_code == 1006
    assert list(session.assembler.peek()) == ["x"]


def test_close_codes_are_plain_ints_that_print_as_numbers() -> None:
    """Not websockets' CloseCode members: before Python 3.11 an IntEnum's str() is its name, so a handler's "%s" of
    close_code (and the ws.close log line) would say "CloseCode.GOING_AWAY" on 3.10 and "1001" on 3.11."""
    peer_closed = feed(encode_frame(OP_CLOSE, close_payload(1001)), False)
    failed = feed(encode_frame(OP_BINARY, b"x" * 1001), False, max_size=1000)
    vanished = feed(b"", False)
    vanished.receive_eof()
    for session, code in ((peer_closed, "1001"), (failed, "1009"), (vanished, "1006")):
        assert type(session.close_code) is int and f"{session.close_code!s}" == code, repr(session.close_code)
        assert type(session.closed_error().code) is int


def test_bytes_after_eof_are_ignored() -> None:
    """A writer saw the socket break (EOF) while a reader still had bytes in hand: no EOFError, the close stays 1006."""
    session = feed(encode_frame(OP_TEXT, b"x"), False)
    session.receive_eof()
    session.receive_data(encode_frame(OP_TEXT, b"y"))
    assert session.receive_done and session.close_code == 1006
    assert list(session.assembler.peek()) == ["x"]


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
    with pytest.raises(SessionClosed) as caught:
        session.send_message("late")
    assert (caught.value.code, caught.value.reason) == (4000, "done")
    assert caught.value.sent is not None and caught.value.rcvd is None


@pytest.mark.parametrize(("code", "reason"), [(999, ""), (1005, ""), (1000, "x" * 124)])
def test_send_close_rejects_invalid_code_or_long_reason(code: int, reason: str) -> None:
    with pytest.raises(UsageError):
        Session(None).send_close(code, reason)


def test_ping_payload_limit() -> None:
    with pytest.raises(UsageError):
        Session(None).send_ping(b"x" * 126)


# The fast path for simple frames (complete, final, unextended, masked text and binary frames between messages).


class CarefulSession(Session):
    """A session whose fast path is off: every byte goes through the splitter and websockets' parser."""

    def _simple_frame_limit(self) -> int:
        return 0


def outcome(session: Session) -> tuple[object, ...]:
    """Everything a session shows after being fed: messages with their types, close state, output, counters."""
    messages = [(type(message), message) for message in session.assembler.peek()]
    return messages, session.receive_done, session.close_code, session.close_reason, session.data_to_send(), session.pongs_received


def both_ways(pieces: list[bytes], **limits: int | None) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The outcome of feeding these reads with the fast path and without it."""
    max_size = limits.pop("max_size", 1000)
    fast, careful = Session(max_size, **limits), CarefulSession(max_size, **limits)  # type: ignore[arg-type]
    for piece in pieces:
        fast.receive_data(piece)
        careful.receive_data(piece)
        assert (len(fast.assembler.peek()), fast.receive_done) == (len(careful.assembler.peek()), careful.receive_done)
    return outcome(fast), outcome(careful)


SIMPLE = [encode_frame(OP_TEXT, b"%03d" % i) if i % 2 else encode_frame(OP_BINARY, b"%03d" % i) for i in range(16)]
MIXED = [
    ("simple frames only", b"".join(SIMPLE)),
    ("empty payloads", encode_frame(OP_TEXT, b"") + encode_frame(OP_BINARY, b"") + encode_frame(OP_TEXT, b"x")),
    (
        "all three length fields",
        encode_frame(OP_TEXT, b"a" * 125) + encode_frame(OP_BINARY, b"b" * 126) + encode_frame(OP_TEXT, b"c", length=127),
    ),
    ("ping in between", SIMPLE[0] + encode_frame(OP_PING, b"p") + SIMPLE[1] + encode_frame(OP_PONG, b"") + SIMPLE[2]),
    ("close after simple frames", SIMPLE[0] + SIMPLE[1] + encode_frame(OP_CLOSE, close_payload(1000, "bye")) + SIMPLE[2]),
    ("fragments in between", SIMPLE[0] + encode_frame(OP_TEXT, b"a", fin=False) + encode_frame(OP_CONT, b"b") + SIMPLE[1]),
    ("text frame inside a fragmented message", SIMPLE[0] + encode_frame(OP_BINARY, b"a", fin=False) + SIMPLE[1]),
    ("orphan continuation", SIMPLE[0] + encode_frame(OP_CONT, b"x") + SIMPLE[1]),
    ("invalid UTF-8 after simple frames", SIMPLE[0] + SIMPLE[1] + encode_frame(OP_TEXT, b"ok\xff") + SIMPLE[2]),
    ("surrogate in text", SIMPLE[0] + encode_frame(OP_TEXT, b"\xed\xa0\x80")),
    (
        "invalid UTF-8 split across fragments",
        SIMPLE[0] + encode_frame(OP_TEXT, b"\xe2\x82", fin=False) + encode_frame(OP_CONT, b"\x28") + SIMPLE[1],
    ),
    ("a character split across fragments", SIMPLE[0] + encode_frame(OP_TEXT, b"\xe2", fin=False) + encode_frame(OP_CONT, b"\x82\xac")),
    ("unmasked after simple frames", SIMPLE[0] + encode_frame(OP_TEXT, b"x", mask=False) + SIMPLE[1]),
    ("rsv1 after simple frames", SIMPLE[0] + encode_frame(OP_BINARY, b"x", rsv=4) + SIMPLE[1]),
    ("rsv3 after simple frames", SIMPLE[0] + encode_frame(OP_BINARY, b"x", rsv=1) + SIMPLE[1]),
    ("reserved opcode", SIMPLE[0] + encode_frame(3, b"x") + SIMPLE[1]),
    ("too big after simple frames", SIMPLE[0] + encode_frame(OP_BINARY, b"x" * 1001) + SIMPLE[1]),
    ("exactly the limit", SIMPLE[0] + encode_frame(OP_TEXT, b"y" * 1000) + SIMPLE[1]),
    ("64-bit length with its top bit set", SIMPLE[0] + b"\x82\xff\x80" + bytes(7) + b"\x00" * 4 + SIMPLE[1]),
    ("garbage after simple frames", SIMPLE[0] + b"\xff\xff\xff\xff\xff\xff\xff"),
]


@pytest.mark.parametrize(("name", "data"), MIXED, ids=[case[0] for case in MIXED])
def test_fast_path_ends_exactly_as_the_careful_path(name: str, data: bytes) -> None:
    """Fed whole, byte by byte, and cut in two at every offset (so any frame may start a read)."""
    for pieces in [[data], [data[i : i + 1] for i in range(len(data))], *([data[:cut], data[cut:]] for cut in range(1, len(data)))]:
        fast, careful = both_ways(pieces)
        assert fast == careful, pieces


LIMITS: list[dict[str, int | None]] = [
    {"max_size": None},
    {"max_size": 0},
    {"max_size": 3},
    {"max_size": None, "max_frame_size": 3},
    {"max_size": 9, "max_frame_size": 1},
]


@pytest.mark.parametrize("limits", LIMITS, ids=str)
def test_fast_path_honours_message_and_frame_limits(limits: dict[str, int | None]) -> None:
    data = encode_frame(OP_TEXT, b"") + encode_frame(OP_TEXT, b"ab") + encode_frame(OP_BINARY, b"abc") + encode_frame(OP_BINARY, b"abcd")
    for cut in range(len(data)):
        fast, careful = both_ways([data[:cut], data[cut:]], **limits)
        assert fast == careful
        assert fast[2] == (None if limits.get("max_size") is None and limits.get("max_frame_size") is None else 1009)


def test_simple_frames_do_not_reach_the_websockets_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(1 << 20)
    monkeypatch.setattr(session._protocol, "receive_data", lambda data: pytest.fail("the parser was used"))
    session.receive_data(b"".join(SIMPLE) + encode_frame(OP_TEXT, "é€😀".encode()) + encode_frame(OP_BINARY, b"\x00" * 70000))
    assert list(session.assembler.peek()) == [f"{i:03}".encode() if i % 2 == 0 else f"{i:03}" for i in range(16)] + [
        "é€😀",
        b"\x00" * 70000,
    ]


def test_the_frame_after_a_partial_one_is_parsed_normally() -> None:
    data = SIMPLE[0] + SIMPLE[1]
    session = Session(1 << 20)
    session.receive_data(data[:-3])
    session.receive_data(data[-3:] + SIMPLE[2])
    assert list(session.assembler.peek()) == [b"000", "001", b"002"]


def test_compressed_sessions_keep_the_careful_path(monkeypatch: pytest.MonkeyPatch) -> None:
    extension = PerMessageDeflate(False, False, 15, 15)
    session = Session(1 << 20, extensions=[extension])
    parsed: list[bytes] = []
    original = session._protocol.receive_data

    def spy(data: bytes) -> None:
        parsed.append(data)
        original(data)

    monkeypatch.setattr(session._protocol, "receive_data", spy)
    session.receive_data(SIMPLE[0] + SIMPLE[1])
    assert parsed and list(session.assembler.peek()) == [b"000", "001"]


def test_streaming_sessions_keep_the_careful_path() -> None:
    session = Session(1 << 20)
    session.start_streaming(2)
    session.receive_data(SIMPLE[1] + SIMPLE[2])
    assert list(session.assembler.peek_parts()) == [("00", False), ("1", True), (b"00", False), (b"2", True)]
    assert not session.assembler.peek()


def test_the_protocol_loggers_info_lines_are_off_unless_asked_for() -> None:
    """websockets' unstructured "connection closed" (INFO) duplicated ws.close without path or peer."""
    import logging

    from wsgi_ws.protocol.session import PROTOCOL_LOGGER

    assert PROTOCOL_LOGGER.name == "wsgi_ws.protocol"
    assert not PROTOCOL_LOGGER.isEnabledFor(logging.INFO) and PROTOCOL_LOGGER.isEnabledFor(logging.WARNING)
