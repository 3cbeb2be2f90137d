"""The hand-written frame bytes: the server header writer, the fast path's reader, and the frame splitter."""

from __future__ import annotations

import struct

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.wsclient import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, encode_frame
from wsgi_ws.protocol.frames import NO_LIMIT, FrameSplitter, add_server_frame, read_simple_frames

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("size", "header"), [(0, b"\x82\x00"), (125, b"\x82\x7d"), (126, b"\x82\x7e\x00\x7e"),
                                              (65535, b"\x82\x7e\xff\xff"), (65536, b"\x82\x7f" + struct.pack("!Q", 65536))])  # fmt: skip
def test_server_frames_use_the_shortest_length_encoding(size: int, header: bytes) -> None:
    out: list[bytes] = []
    add_server_frame(out, b"x" * size, text=False)
    assert b"".join(out) == header + b"x" * size
    assert len(out) == (1 if size <= 1024 else 2), "a large payload stays its own chunk: no copy"


def test_server_text_frames_have_opcode_1_and_are_unmasked() -> None:
    out: list[bytes] = []
    add_server_frame(out, "é".encode(), text=True)
    assert out == [b"\x81\x02\xc3\xa9"]


def test_simple_frames_are_read_up_to_the_first_other_frame() -> None:
    data = encode_frame(OP_TEXT, b"one") + encode_frame(OP_BINARY, b"\x00two") + encode_frame(OP_PING, b"p") + encode_frame(OP_TEXT, b"x")
    messages: list[str | bytes] = []
    end = read_simple_frames(data, NO_LIMIT, messages.append)
    assert messages == ["one", b"\x00two"]
    assert data[end:].startswith(encode_frame(OP_PING, b"p")[:2]), "the ping and what follows are left to the careful path"


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("unmasked", encode_frame(OP_TEXT, b"x", mask=False)),
        ("fragment", encode_frame(OP_TEXT, b"x", fin=False)),
        ("rsv bit", encode_frame(OP_TEXT, b"x", rsv=4)),
        ("invalid utf-8", encode_frame(OP_TEXT, b"\xff")),
        ("close", encode_frame(OP_CLOSE, b"\x03\xe8")),
        ("incomplete", encode_frame(OP_TEXT, b"abcdef")[:-1]),
    ],
)
def test_anything_but_a_whole_simple_frame_is_left_alone(name: str, frame: bytes) -> None:
    messages: list[str | bytes] = []
    assert read_simple_frames(frame, NO_LIMIT, messages.append) == 0 and messages == []


def test_a_frame_at_the_size_limit_is_left_to_the_careful_path() -> None:
    messages: list[str | bytes] = []
    assert read_simple_frames(encode_frame(OP_BINARY, b"x" * 10), 10, messages.append) == 0
    assert read_simple_frames(encode_frame(OP_BINARY, b"x" * 9), 10, messages.append) > 0 and messages == [b"x" * 9]


def test_pongs_between_messages_are_counted_and_skipped_when_asked() -> None:
    messages: list[str | bytes] = []
    pongs: list[None] = []
    data = encode_frame(OP_TEXT, b"a") + encode_frame(OP_PONG, b"keep-alive") + encode_frame(OP_TEXT, b"b")
    assert read_simple_frames(data, NO_LIMIT, messages.append, lambda: pongs.append(None)) == len(data)
    assert messages == ["a", "b"] and len(pongs) == 1
    assert read_simple_frames(data, NO_LIMIT, messages.append) == len(encode_frame(OP_TEXT, b"a")), "without pong: the careful path"
    for other in (encode_frame(OP_PONG, b"x" * 126), encode_frame(OP_PONG, b"x", mask=False), encode_frame(OP_PONG, b"xy")[:-1]):
        assert read_simple_frames(other, NO_LIMIT, messages.append, lambda: pongs.append(None)) == 0, "too long, unmasked, partial"
    assert len(pongs) == 1


def parse(data: bytes) -> list[Frame]:
    """Client frames parsed by websockets' own parser (unmasking them)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=[])
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_a_frame_split_as_it_arrives_carries_the_same_payload_in_fragments(chunk: int) -> None:
    payload = bytes(range(256)) * 4
    data = encode_frame(OP_BINARY, payload)
    splitter = FrameSplitter(chunk_size=None)
    out = b"".join(splitter.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    frames = parse(out)
    assert b"".join(bytes(frame.data) for frame in frames) == payload
    assert frames[0].opcode is Opcode.BINARY and all(frame.opcode is Opcode.CONT for frame in frames[1:])
    assert [frame.fin for frame in frames] == [False] * (len(frames) - 1) + [True]
    assert splitter.idle


def test_streaming_splits_even_whole_frames_into_chunks_of_at_most_chunk_size() -> None:
    splitter = FrameSplitter(chunk_size=100)
    frames = parse(splitter.feed(encode_frame(OP_TEXT, b"a" * 250)))
    assert [len(frame.data) for frame in frames] == [100, 100, 50]


def test_whole_frames_pass_through_unchanged() -> None:
    data = encode_frame(OP_TEXT, b"hello") + encode_frame(OP_PING, b"p")
    assert FrameSplitter().feed(data) == data


@pytest.mark.parametrize(
    "header",
    [
        struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 63),  # 64-bit length with the top bit set
        bytes([0x82 | 0x30, 0x80]),  # RSV2 and RSV3
        bytes([0x89, 0x80 | 126]) + struct.pack("!H", 200),  # a ping over 125 bytes
    ],
)
def test_header_violations_stop_the_splitter_with_an_error(header: bytes) -> None:
    splitter = FrameSplitter()
    before = encode_frame(OP_TEXT, b"ok")
    out = splitter.feed(before + header + b"\x00" * 8)
    assert out.startswith(before) and splitter.error is not None
