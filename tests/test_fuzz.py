"""Property tests (hypothesis) of the sans-I/O layer: round trips, garbage, the fast path against the careful one.

Garbage against the real server is in ``tests/test_e2e_garbage.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_protocol import CarefulSession
from tests.wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame
from wsgi_ws.protocol import Session
from wsgi_ws.protocol.errors import HandshakeRefused
from wsgi_ws.protocol.handshake import validate_request
from wsgi_ws.protocol.origins import OriginPolicy

pytestmark = pytest.mark.unit

Message = str | bytes
messages = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), max_size=8)
VALID_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} | set(range(3000, 5000))


def frames_for(message: Message, cuts: list[int]) -> bytes:
    """A message as client frames, cut at the given (sorted, in-range) byte offsets."""
    data = message.encode() if isinstance(message, str) else message
    points = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(points)] or [b""]
    first = OP_TEXT if isinstance(message, str) else OP_BINARY
    return b"".join(encode_frame(first if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1) for i, piece in enumerate(pieces))


def chunked(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    position = 0
    for size in sizes:
        if position >= len(data):
            return
        yield data[position : position + size]
        position += size
    if position < len(data):
        yield data[position:]


@settings(max_examples=300, deadline=None)
@given(messages, st.lists(st.integers(0, 400), max_size=4), st.lists(st.integers(1, 64), max_size=50))
def test_any_messages_in_any_fragmentation_and_chunking_round_trip(sent: list[Message], cuts: list[int], sizes: list[int]) -> None:
    stream = b"".join(frames_for(message, cuts) for message in sent)
    session = Session(1 << 20)
    for chunk in chunked(stream, sizes):
        session.receive_data(chunk)
    assert list(session.assembler.peek()) == sent
    assert not session.receive_done


@settings(max_examples=300, deadline=None)
@given(messages, st.integers(1, 64), st.lists(st.integers(1, 97), max_size=50))
def test_streamed_parts_join_to_the_same_messages(sent: list[Message], chunk_size: int, sizes: list[int]) -> None:
    session = Session(1 << 20)
    session.start_streaming(chunk_size)
    for chunk in chunked(b"".join(frames_for(message, [7]) for message in sent), sizes):
        session.receive_data(chunk)
    joined: list[Message] = []
    current: list[Message] = []
    for part, end in session.assembler.peek_parts():
        current.append(part)
        if end:
            joined.append("".join(current) if isinstance(current[0], str) else b"".join(current))  # type: ignore[arg-type]
            current = []
    assert joined == sent


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
def test_arbitrary_bytes_never_crash_the_protocol_layer(garbage: bytes, streaming: bool) -> None:
    session = Session(4096)
    if streaming:
        session.start_streaming(100)
    session.receive_data(garbage)
    out = session.data_to_send()
    if session.receive_done:
        assert session.close_code in VALID_CLOSE_CODES | {1005, 1006}
    for chunk in out:
        assert isinstance(chunk, bytes)


any_frame = st.builds(
    encode_frame,
    st.sampled_from([OP_TEXT] * 4 + [OP_BINARY] * 4 + [OP_CONT, OP_CLOSE, OP_PING, OP_PONG, 3, 11]),
    st.one_of(
        st.text(max_size=40).map(str.encode),
        st.binary(max_size=40),
        st.binary(min_size=100, max_size=300),
        st.sampled_from([b"0123456789", b"0123456789a"]),  # at the size limits below, or one byte over
        st.sampled_from([b"\xff", b"\xe2\x82", b"\xed\xa0\x80", b"\x03\xe8"]),  # bad UTF-8, a cut character, a surrogate, 1000
    ),
    fin=st.sampled_from([True] * 3 + [False]),
    rsv=st.sampled_from([0] * 12 + [1, 2, 4]),
    mask=st.sampled_from([True] * 15 + [False]),
    length=st.sampled_from([None] * 6 + [126, 127]),
)
# Each frame (or a bit of junk) and where the read it is in ends: not there, right after it, or inside it.
cuts = st.one_of(st.just(-1), st.just(0), st.integers(1, 400))
pieces = st.tuples(st.one_of(any_frame, any_frame, any_frame, any_frame, st.binary(min_size=1, max_size=12)), cuts)


def reads(frames: list[tuple[bytes, int]]) -> list[bytes]:
    """The stream of these frames cut into reads: after a frame (cut 0), inside it (cut > 0, modulo its size), or not."""
    cuts, position = [], 0
    for frame, cut in frames:
        if cut >= 0:
            cuts.append(position + (cut % len(frame) if cut else len(frame)))
        position += len(frame)
    stream = b"".join(frame for frame, _ in frames)
    points = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=1500, deadline=None)
@given(st.lists(pieces, max_size=16), st.sampled_from([(None, None), (1 << 20, None), (10, None), (None, 10), (150, 130)]))
def test_fast_path_ends_as_the_careful_path_on_any_frames(frames: list[tuple[bytes, int]], limits: tuple[int | None, int | None]) -> None:
    fast, careful = Session(*limits), CarefulSession(*limits)
    for chunk in reads(frames):
        fast.receive_data(chunk)
        careful.receive_data(chunk)
        assert list(fast.assembler.peek()) == list(careful.assembler.peek())
        assert fast.data_to_send() == careful.data_to_send()
        assert (fast.receive_done, fast.close_code, fast.close_reason) == (careful.receive_done, careful.close_code, careful.close_reason)
    assert [type(message) for message in fast.assembler.peek()] == [type(message) for message in careful.assembler.peek()]
    assert fast.pongs_received == careful.pongs_received


header_values = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["13", "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ=="]))


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["GET", "POST", ""]),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "garbage"]),
    header_values,
    header_values,
    header_values,
    header_values,
    header_values,
)
def test_handshake_validation_only_ever_refuses_with_handshake_error(
    method: str, protocol: str, connection: str | None, version: str | None, key: str | None, origin: str | None, extensions: str | None
) -> None:
    environ = {"REQUEST_METHOD": method, "SERVER_PROTOCOL": protocol, "HTTP_HOST": "h", "HTTP_UPGRADE": "websocket"}
    for name, value in [
        ("HTTP_CONNECTION", connection),
        ("HTTP_SEC_WEBSOCKET_VERSION", version),
        ("HTTP_SEC_WEBSOCKET_KEY", key),
        ("HTTP_ORIGIN", origin),
        ("HTTP_SEC_WEBSOCKET_EXTENSIONS", extensions),
    ]:
        if value is not None:
            environ[name] = value
    try:
        validate_request(environ, OriginPolicy(("https://a.example",)))
    except HandshakeRefused as error:
        assert error.status in (400, 403, 426)
