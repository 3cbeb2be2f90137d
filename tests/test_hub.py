"""The hub over real WebSockets on socketpairs: groups, frame once, one write per pass, skipping the sender,
compression, and members that fall behind (close 1013 after whole frames, drop-oldest, latest, never reading)."""

from __future__ import annotations

import select
import threading
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.constants import TIMEOUT
from tests.fakes import Spawner
from tests.hubkit import DEFLATE, Peer, Setup
from tests.wsclient import OP_CLOSE, OP_TEXT, close_payload
from wsgi_ws.hub import Hub
from wsgi_ws.protocol import frames

pytestmark = pytest.mark.socket


def test_members_get_every_message_in_order_and_other_groups_none(setup: Setup) -> None:
    (alice, alice_peer), (bob, bob_peer), (carol, carol_peer) = setup.connect(), setup.connect(), setup.connect()
    setup.hub.join(alice, "lobby")
    setup.hub.join(bob, "lobby")
    setup.hub.join(carol, "kitchen")
    assert setup.backend.subscribed == ["lobby", "kitchen"], "one subscription per group, when its first member joins"
    for message in ("one", b"two", "three"):
        assert setup.hub.publish("lobby", message) == 1
    setup.run()
    expected = [(OP_TEXT, b"one"), (0x2, b"two"), (OP_TEXT, b"three")]
    assert alice_peer.messages(3) == expected and bob_peer.messages(3) == expected
    assert not select.select([carol_peer.sock], [], [], 0)[0], "nothing for another group"
    assert setup.hub.members("lobby") == 2 and setup.hub.members("kitchen") == 1 and setup.hub.members("nowhere") == 0
    assert setup.hub.counters.delivered == 6 and alice.messages_sent == 3


def test_a_message_is_framed_once_for_all_members(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bytes] = []
    real = frames.server_frame

    def counting(payload: bytes, text: bool) -> bytes:
        built.append(payload)
        return real(payload, text)

    monkeypatch.setattr("wsgi_ws.hub.outgoing.server_frame", counting)
    peers = []
    for _ in range(5):
        ws, peer = setup.connect()
        setup.hub.join(ws, "lobby")
        peers.append(peer)
    setup.hub.publish("lobby", "once")
    setup.run()
    assert built == [b"once"]
    assert all(peer.read_message() == (OP_TEXT, b"once") for peer in peers)


def test_publishing_to_a_group_nobody_is_in_returns_0(setup: Setup) -> None:
    ws, _ = setup.connect()
    assert setup.hub.publish("empty", "lost") == 0
    setup.hub.join(ws, "lobby")
    assert setup.hub.publish("lobby", "heard") == 1
    assert setup.hub.publish("lobby", "only me", exclude=ws) == 0, "its only member is the sender, skipped"


def test_exclude_skips_the_sender_and_nobody_else(setup: Setup) -> None:
    (alice, alice_peer), (bob, bob_peer) = setup.connect(), setup.connect()
    setup.hub.join(alice, "lobby")
    setup.hub.join(bob, "lobby")
    setup.hub.publish("lobby", "from alice", exclude=alice)
    setup.hub.publish("lobby", "to all")
    setup.hub.publish("lobby", "from bob", exclude=bob)
    setup.run()
    assert alice_peer.messages(2) == [(OP_TEXT, b"to all"), (OP_TEXT, b"from bob")]
    assert bob_peer.messages(2) == [(OP_TEXT, b"from alice"), (OP_TEXT, b"to all")]
    assert len(set(setup.backend.senders) - {b""}) == 2, "each member has its own token"


def test_leaving_one_group_or_all_and_the_last_member_unsubscribes(setup: Setup) -> None:
    alice, alice_peer = setup.connect()
    setup.hub.join(alice, "lobby")
    setup.hub.join(alice, "kitchen")
    setup.hub.leave(alice, "kitchen")
    assert setup.backend.unsubscribed == ["kitchen"] and setup.hub.groups() == ["lobby"]
    setup.hub.leave_all(alice)
    assert setup.backend.unsubscribed == ["kitchen", "lobby"] and setup.hub.members("lobby") == 0
    setup.hub.publish("lobby", "after")
    setup.run()
    alice.close()  # the close frame is the next thing the peer sees: nothing was delivered after leaving
    assert alice_peer.read_frame().opcode == OP_CLOSE  # type: ignore[union-attr]


def test_a_connection_that_leaves_and_joins_again_is_watched_once(setup: Setup) -> None:
    alice, alice_peer = setup.connect()
    for _ in range(3):
        setup.hub.join(alice, "lobby")
        setup.hub.leave_all(alice)
    setup.hub.join(alice, "lobby")
    assert len(alice.finish_callbacks) == 1, "one end-of-connection callback, not one per join"
    setup.hub.publish("lobby", "still here")
    setup.run()
    assert alice_peer.read_message() == (OP_TEXT, b"still here")
    for callback in alice.finish_callbacks:
        callback()
    assert setup.hub.members("lobby") == 0 and setup.backend.unsubscribed[-1] == "lobby"


def test_compressed_connections_get_a_frame_compressed_once_per_parameter_set(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    compressed: list[bytes] = []
    real = frames.deflate_frame

    def counting(payload: bytes, text: bool, params: tuple[int, int, int]) -> bytes:
        compressed.append(payload)
        return real(payload, text, params)

    monkeypatch.setattr("wsgi_ws.hub.outgoing.deflate_frame", counting)
    members = [setup.connect(DEFLATE, compression=True, compression_no_context_takeover=True) for _ in range(3)]
    own, own_peer = setup.connect(DEFLATE, compression=True)  # keeps its context: compresses for itself
    plain, plain_peer = setup.connect()
    for ws, _ in [*members, (own, own_peer), (plain, plain_peer)]:
        setup.hub.join(ws, "lobby")
    text = "a compressible line " * 20
    setup.hub.publish("lobby", text)
    setup.run()
    assert compressed == [text.encode()], "compressed once for the three that reset their context"
    for _, peer in [*members, (own, own_peer)]:
        frame = peer.read_frame()
        assert frame is not None and frame.rsv & 0b100 and frame.opcode == OP_TEXT, "RSV1: compressed"
        inflate = zlib.decompressobj(-15)
        assert inflate.decompress(frame.payload + b"\x00\x00\xff\xff").decode() == text
    assert plain_peer.read_message() == (OP_TEXT, text.encode())


def flood(setup: Setup, group: str, count: int, size: int = 1000) -> list[bytes]:
    """Publish ``count`` numbered messages of ``size`` bytes in one turn; returns them."""
    messages = [f"{n:06d}".encode() + b"x" * (size - 6) for n in range(count)]
    for message in messages:
        setup.hub.publish(group, message)
    while setup.passes:
        setup.passes.pop(0)()
    return messages


def test_a_member_over_its_bounds_gets_whole_frames_then_1013(setup: Setup) -> None:
    slow, slow_peer = setup.connect(buffer=4096, hub_queue_limit=10)
    fast, fast_peer = setup.connect()
    setup.hub.join(slow, "lobby")
    setup.hub.join(fast, "lobby")
    messages = flood(setup, "lobby", 100)  # the slow socket takes a few KB, its backlog overflows
    assert setup.hub.members("lobby") == 1 and setup.hub.counters.closed_slow == 1
    answered = threading.Thread(target=lambda: received.extend(read_until_close(slow_peer)))
    received: list[tuple[int, bytes]] = []
    answered.start()
    setup.spawn.run_all()  # the closer: the frame in flight, then close 1013
    answered.join(TIMEOUT)
    data, close = received[:-1], received[-1]
    assert close == (OP_CLOSE, close_payload(1013, "too slow: fell behind the broadcast"))
    assert data and [payload for _, payload in data] == messages[: len(data)], "whole frames, in order, then the close"
    assert setup.hub.counters.dropped == 100 - len(data)
    assert [payload for _, payload in fast_peer.messages(100)] == messages, "the others keep everything"


def read_until_close(peer: Peer) -> list[tuple[int, bytes]]:
    """Read every frame up to the close frame, and answer it."""
    frames = []
    while True:
        frame = peer.read_frame()
        assert frame is not None
        frames.append((frame.opcode, frame.payload))
        if frame.opcode == OP_CLOSE:
            peer.send_frame(OP_CLOSE, frame.payload)
            return frames


@pytest.mark.parametrize("policy", ["drop-oldest", "latest"])
def test_a_member_over_its_bounds_loses_the_oldest_or_keeps_the_latest(setup: Setup, policy: str) -> None:
    slow, slow_peer = setup.connect(buffer=4096, hub_queue_limit=10, hub_overflow=policy)
    setup.hub.join(slow, "lobby")
    flood(setup, "lobby", 100)
    threading.Thread(target=setup.spawn.run_all).start()  # the writer sends the backlog as the peer reads
    numbers: list[int] = []
    while not numbers or numbers[-1] != 99:
        _, payload = slow_peer.read_message()
        numbers.append(int(payload[:6]))
    assert numbers == sorted(numbers) and len(numbers) < 100
    kept = 10 if policy == "drop-oldest" else 1
    assert numbers[-kept:] == list(range(100 - kept, 100)), "the newest survive"
    assert setup.hub.counters.dropped == 100 - len(numbers) and slow.messages_sent == len(numbers)
    assert setup.hub.members("lobby") == 1, "still a member"


def test_a_member_that_never_reads_is_cut_after_close_timeout(setup: Setup) -> None:
    setup.spawn = Spawner()
    setup.hub = Hub(setup.backend, _thread, defer=setup.passes.append)
    stuck, stuck_peer = setup.connect(buffer=4096, hub_queue_limit=10, close_timeout=0.2)
    fast, fast_peer = setup.connect()
    setup.hub.join(stuck, "lobby")
    setup.hub.join(fast, "lobby")
    messages = flood(setup, "lobby", 100)
    assert [payload for _, payload in fast_peer.messages(100)] == messages
    stuck_peer.sock.settimeout(TIMEOUT)
    while stuck_peer.sock.recv(65536):  # only now does it read: what was in flight, then the end
        pass
    assert setup.hub.counters.closed_slow == 1 and setup.hub.members("lobby") == 1


def _thread(function: Callable[..., Any], *args: Any) -> None:
    threading.Thread(target=function, args=args, daemon=True).start()
