"""Message assembly without sockets: whole messages, fragments, parts of a bounded size, UTF-8 failing fast."""

from __future__ import annotations

import pytest
from websockets.frames import Opcode

from wsgi_ws.protocol.assembler import Assembler, PartialMessage

pytestmark = pytest.mark.unit

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


def test_whole_and_fragmented_messages_come_out_in_order_with_their_types() -> None:
    assembler = Assembler()
    assembler.add_frame(TEXT, b"caf", False)
    assert assembler.in_message and not assembler.waiting()
    assembler.add_frame(CONT, b"\xc3", False)  # a character split across fragments
    assembler.add_frame(CONT, b"\xa9", True)
    assembler.add_frame(BINARY, b"\x00", False)
    assembler.add_frame(CONT, b"\x01", True)
    assembler.add_frame(BINARY, b"", True)
    assert assembler.peek() == ("café", b"\x00\x01", b"")
    assert [assembler.pop_message() for _ in range(3)] == ["café", b"\x00\x01", b""]
    assert assembler.pop_message() is None and not assembler.has_unread()


def test_invalid_utf8_is_refused_in_the_fragment_it_arrives_in() -> None:
    assembler = Assembler()
    assembler.add_frame(TEXT, b"ok", False)
    with pytest.raises(UnicodeDecodeError):
        assembler.add_frame(CONT, b"\xff", False)  # not the last fragment: refused at once


def test_an_unfinished_message_can_be_dropped() -> None:
    assembler = Assembler()
    assembler.add_frame(BINARY, b"half", False)
    assembler.drop_unfinished()
    assert not assembler.in_message and assembler.peek() == ()


def test_streaming_gives_parts_of_at_most_the_limit_joining_small_ones() -> None:
    assembler = Assembler()
    assembler.add_frame(TEXT, b"before", True)  # completed before streaming began: comes first
    assembler.start_streaming()
    for piece in (b"ab", b"cd", b"efghij"):
        assembler.add_frame(BINARY if piece == b"ab" else CONT, piece, piece == b"efghij")
    assert assembler.peek_parts() == ((b"ab", False), (b"cd", False), (b"efghij", True))
    assert assembler.unread_size() == len("before") + 10
    parts = []
    while (part := assembler.pop_part(4)) is not None:
        parts.append(part)
    assert parts == [
        PartialMessage("befo", False),  # a whole message is cut at the limit too
        PartialMessage("re", True),
        PartialMessage(b"abcd", False),
        PartialMessage(b"efgh", False),
        PartialMessage(b"ij", True),
    ]


def test_text_parts_are_never_cut_inside_a_character() -> None:
    assembler = Assembler()
    assembler.start_streaming()
    assembler.add_frame(TEXT, "ééé".encode(), True)  # 6 bytes
    heads = []
    while (part := assembler.pop_part(3)) is not None:
        heads.append(part)
    assert heads == [PartialMessage("é", False), PartialMessage("é", False), PartialMessage("é", True)]


def test_discard_drops_everything_unread() -> None:
    assembler = Assembler()
    assembler.add_frame(TEXT, b"x", True)
    assembler.start_streaming()
    assembler.add_frame(BINARY, b"yy", True)
    assert assembler.pop_part(1) == PartialMessage("x", True)
    assert assembler.pop_part(1) == PartialMessage(b"y", False)
    assembler.discard()
    assert assembler.pop_part(1) is None and not assembler.has_unread()
