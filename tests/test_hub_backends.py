"""Hub backends without Redis: the payload encoding, and the in-memory backend (Redis: tests/test_e2e_hub.py)."""

from __future__ import annotations

import pytest

from wsgi_ws.hub.backends import MemoryBackend, decode, encode
from wsgi_ws.protocol.assembler import Message

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("message", ["text ✓", b"\x00binary", "", b""])
def test_payload_encoding_round_trips(message: str | bytes) -> None:
    assert decode(encode(message)) == message and type(decode(encode(message))) is type(message)


def test_a_payload_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wsgi-ws hub payload"):
        decode(b"xjunk")


def test_the_memory_backend_delivers_at_once_as_immutable_messages() -> None:
    delivered: list[tuple[str, Message]] = []
    backend = MemoryBackend()
    assert backend.publish("lobby", "before start")  # nobody to deliver to yet: nothing happens
    backend.start(lambda group, message: delivered.append((group, message)))
    assert backend.publish("lobby", bytearray(b"ab"))
    assert delivered == [("lobby", b"ab")] and type(delivered[0][1]) is bytes
