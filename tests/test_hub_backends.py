"""Hub backends without Redis: the payload encoding, and the in-memory backend (Redis: tests/test_e2e_hub.py)."""

from __future__ import annotations

import pytest

from wsgi_ws.hub.backends import READY, MemoryBackend, Published, decode, encode
from wsgi_ws.hub.history import Position

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("message", ["text ✓", b"\x00binary", "", b""])
@pytest.mark.parametrize("sender", [b"", b"12345678"])
def test_payload_encoding_round_trips(message: str | bytes, sender: bytes) -> None:
    decoded, decoded_sender = decode(encode(message, sender))
    assert decoded == message and type(decoded) is type(message) and decoded_sender == sender


def test_a_payload_without_a_sender_is_what_older_publishers_send() -> None:
    assert encode("hi") == b"thi" and encode(b"hi") == b"bhi"


@pytest.mark.parametrize("payload", [b"xjunk", b"", b"Tshort"])
def test_a_payload_of_another_kind_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a wsgi-ws hub payload"):
        decode(payload)


class Receiver:
    def __init__(self, members: dict[str, set[bytes]]) -> None:
        self.members = members
        self.delivered: list[tuple[str, Published, bytes]] = []
        self.positions: list[Position | None] = []
        self.resumptions: list[str] = []

    def deliver(self, group: str, message: Published, sender: bytes = b"", position: Position | None = None) -> None:
        self.delivered.append((group, message, sender))
        self.positions.append(position)

    def resumed(self, group: str) -> None:
        self.resumptions.append(group)

    def reaches(self, group: str, sender: bytes = b"") -> bool:
        return bool(self.members.get(group, set()) - {sender})


def test_the_memory_backend_delivers_at_once_as_immutable_messages_and_counts_the_reach() -> None:
    backend = MemoryBackend()
    assert backend.publish("lobby", "before start") == 0  # nobody to deliver to yet: nothing happens
    receiver = Receiver({"lobby": {b"alice", b"bob"}, "solo": {b"carol"}})
    backend.start(receiver)
    assert backend.subscribe("lobby") is READY and READY.wait(0)
    assert backend.publish("lobby", bytearray(b"ab")) == 1
    assert backend.publish("solo", "to herself", b"carol") == 0, "skipping its only member reaches nobody"
    assert backend.publish("nowhere", "x") == 0
    assert receiver.delivered == [("lobby", b"ab", b"")] and type(receiver.delivered[0][1]) is bytes
