"""Recoverable groups: positions, the in-memory history, how a worker puts what arrives in order (gaps filled,
duplicates dropped, losses announced), joins that resume over real WebSockets on socketpairs, and per-user delivery."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.hubkit import Setup
from tests.wsclient import OP_CLOSE, OP_TEXT, close_payload
from wsgi_ws.hub import feed
from wsgi_ws.hub.history import Delivery, Entry, History, HistoryRead, MemoryHistory, Position, Recovery
from wsgi_ws.hub.member import Counters
from wsgi_ws.hub.outgoing import Notice, Outgoing
from wsgi_ws.hub.recovery import Tracks, missed_since, parse_since

unit = pytest.mark.unit
socket_tier = pytest.mark.socket


# Positions and the in-memory history.


@unit
def test_a_position_round_trips_as_an_opaque_token_and_bad_tokens_are_refused() -> None:
    position = Position("ab12cd34", 42)
    assert Position.parse(position.token()) == position
    for bad in ("", "42", "-42", "ab-", "ab-x", "ab-" + "9" * 20, "x" * 70 + "-1"):
        with pytest.raises(ValueError):
            Position.parse(bad)
    assert parse_since("nonsense") == (None, False) and parse_since("") == (None, True) and parse_since(None) == (None, True)


@unit
def test_the_memory_history_numbers_trims_and_expires_like_redis() -> None:
    now = [0.0]
    history = MemoryHistory(clock=lambda: now[0])
    keep = History(size=3, ttl=10.0)
    positions = [history.append("g", f"m{number}", b"", keep) for number in range(5)]
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5] and len({p.epoch for p in positions}) == 1
    read = history.read("g", 3, History(100, 10.0))
    assert (read.top, read.first, [e.message for e in read.entries]) == (5, 3, ["m3", "m4"])
    assert read.reaches(Position(read.epoch, 2)) and not read.reaches(Position(read.epoch, 1))
    assert not read.reaches(Position("other", 4)), "another epoch's position is never recovered"
    now[0] = 11.0  # ttl after the last publish: gone, and the next publish starts a new epoch
    fresh = history.read("g", 0, keep)
    assert fresh.epoch != positions[0].epoch and (fresh.top, fresh.entries) == (0, []), "an empty history, a new epoch"
    assert history.append("g", "new", b"", keep) == Position(fresh.epoch, 1)


@unit
def test_what_a_resuming_join_gets() -> None:
    read = HistoryRead("e", 5, 3, [Entry(3, "c", b""), Entry(4, "d", b""), Entry(5, "e", b"")])
    held: list[Outgoing | Notice] = [Outgoing("g", "e", b"", Position("e", 5)), Outgoing("g", "f", b"", Position("e", 6))]
    recovery, items = missed_since("g", Position("e", 3), read, held)
    assert recovery == Recovery(True, 2, Position("e", 5))
    assert [item.message for item in items if isinstance(item, Outgoing)] == ["d", "e", "f"], "the held 5 is not sent twice"
    recovery, items = missed_since("g", Position("e", 1), read, [])
    assert recovery.recovered is False and recovery.missed == 3, "trimmed: what there is, and the client is told"
    recovery, items = missed_since("g", Position("old", 3), read, held)
    assert recovery.recovered is False and [i.message for i in items if isinstance(i, Outgoing)] == ["f"]
    assert missed_since("g", None, read, [])[0] == Recovery(True, 0, Position("e", 5))


class HistoryBackend:
    """Just enough backend for :class:`Tracks`: a fixed history, and the reads made of it."""

    def __init__(self, read: HistoryRead) -> None:
        self.history = read
        self.reads: list[tuple[str, int, int]] = []

    def read_history(self, group: str, after: int, history: History) -> HistoryRead:
        self.reads.append((group, after, history.size))
        read = self.history
        return HistoryRead(read.epoch, read.top, read.first, [e for e in read.entries if e.offset > after][: history.size])


def tracks_over(read: HistoryRead) -> tuple[Tracks, HistoryBackend, Counters]:
    backend = HistoryBackend(read)
    counters = Counters()
    return Tracks(backend, lambda group: History(100, 60.0), counters), backend, counters  # type: ignore[arg-type]


def arrive(tracks: Tracks, epoch: str, offset: int) -> list[Any]:
    items = tracks.arrange("g", Outgoing("g", f"m{offset}", b"", Position(epoch, offset)))
    return [item.message if isinstance(item, Outgoing) else ("lost", item.recovery.recovered) for item in items]


@unit
def test_a_worker_hands_on_each_message_once_in_order_and_fills_gaps_from_history() -> None:
    entries = [Entry(offset, f"m{offset}", b"") for offset in range(1, 10)]
    tracks, backend, counters = tracks_over(HistoryRead("e", 9, 1, entries))
    assert arrive(tracks, "e", 1) == ["m1"] and arrive(tracks, "e", 2) == ["m2"]
    assert arrive(tracks, "e", 2) == [] and arrive(tracks, "e", 1) == [], "duplicates are dropped"
    assert backend.reads == []
    assert arrive(tracks, "e", 5) == ["m3", "m4", "m5"], "the gap is read from history, in order"
    assert arrive(tracks, "e", 4) == [], "the late one is a duplicate now"
    assert counters.filled == 2 and counters.lost == 0


@unit
def test_a_gap_the_history_no_longer_covers_or_a_new_epoch_is_announced_never_silent() -> None:
    tracks, _, counters = tracks_over(HistoryRead("e", 20, 15, [Entry(offset, f"m{offset}", b"") for offset in range(15, 21)]))
    arrive(tracks, "e", 1)
    assert arrive(tracks, "e", 18) == [("lost", False), "m15", "m16", "m17", "m18"]
    tracks, _, counters = tracks_over(HistoryRead("new", 3, 1, [Entry(1, "m1", b""), Entry(2, "m2", b""), Entry(3, "m3", b"")]))
    arrive(tracks, "old", 7)
    assert arrive(tracks, "new", 3) == [("lost", False), "m1", "m2", "m3"]
    assert counters.lost == 1


@unit
def test_catching_up_after_an_outage_reads_what_was_missed_or_announces_the_loss() -> None:
    tracks, _, _ = tracks_over(HistoryRead("e", 6, 1, [Entry(offset, f"m{offset}", b"") for offset in range(1, 7)]))
    arrive(tracks, "e", 1)
    assert [item.message for item in tracks.catch_up("g") if isinstance(item, Outgoing)] == ["m2", "m3", "m4", "m5", "m6"]
    assert arrive(tracks, "e", 6) == [] and arrive(tracks, "e", 7) == ["m7"]
    tracks, _, counters = tracks_over(HistoryRead("", 0, 1, []))  # Redis came back empty
    arrive(tracks, "e", 1)
    (notice,) = tracks.catch_up("g")
    assert isinstance(notice, Notice) and notice.recovery == Recovery(False, 0, None) and counters.lost == 1
    assert arrive(tracks, "fresh", 1) == ["m1"], "after the loss was told, the new epoch starts without another"


# Joins that resume, over real WebSockets.


def json_messages(peer: Any, count: int) -> list[dict[str, Any]]:
    got = peer.messages(count)
    assert all(opcode == OP_TEXT for opcode, _ in got)
    return [json.loads(payload) for _, payload in got]


@socket_tier
def test_a_join_that_resumes_gets_the_announcement_what_it_missed_then_live(setup: Setup) -> None:
    setup.hub.set_history("*", 100)
    (alice, alice_peer), (bob, bob_peer) = setup.connect(), setup.connect()
    first = setup.hub.join(alice, "news", render=feed.render, announce=feed.announce)
    assert first.recovered and first.missed == 0 and first.position is not None and first.position.offset == 0
    for number in range(4):
        setup.hub.publish("news", f"n{number}")
    setup.run()
    got = json_messages(alice_peer, 5)
    assert got[0] == {"type": "joined", "recovered": True, "missed": 0, "position": first.position.token()}
    assert [m["data"] for m in got[1:]] == ["n0", "n1", "n2", "n3"]
    recovery = setup.hub.join(bob, "news", since=got[2]["position"], render=feed.render, announce=feed.announce)
    assert recovery.recovered and recovery.missed == 2 and setup.hub.counters.replayed == 2
    setup.hub.publish("news", "n4")
    setup.run()
    bob_got = json_messages(bob_peer, 4)
    assert bob_got[0]["missed"] == 2 and [m["data"] for m in bob_got[1:]] == ["n2", "n3", "n4"]
    assert json_messages(alice_peer, 1)[0]["data"] == "n4"


@socket_tier
def test_live_messages_during_the_history_read_are_held_and_sent_once_after_it(setup: Setup) -> None:
    setup.hub.set_history("*", 100)
    (alice, alice_peer), (bob, bob_peer) = setup.connect(), setup.connect()
    setup.hub.join(alice, "news")
    setup.hub.publish("news", "old")
    setup.run()
    real_read = setup.backend.read_history
    epoch = real_read("news", 0, History(10, 60.0)).epoch

    def read_while_publishing(group: str, after: int, history: History) -> HistoryRead:
        setup.hub.publish("news", "during")  # arrives live (held for bob) and is in the history read too
        setup.run()
        return real_read(group, after, history)

    setup.backend.read_history = read_while_publishing  # type: ignore[method-assign]
    setup.hub.join(bob, "news", since=Position(epoch, 0).token(), render=feed.render)
    setup.backend.read_history = real_read  # type: ignore[method-assign]
    setup.hub.publish("news", "after")
    setup.run()
    assert [json.loads(p)["data"] for _, p in bob_peer.messages(3)] == ["old", "during", "after"]
    assert [p for _, p in alice_peer.messages(3)] == [b"old", b"during", b"after"]


@socket_tier
def test_messages_the_history_already_gave_a_resuming_member_are_not_sent_again_when_they_arrive(setup: Setup) -> None:
    setup.hub.set_history("*", 100)
    (alice, alice_peer), (bob, bob_peer) = setup.connect(), setup.connect()
    setup.hub.join(alice, "news")
    kept = History(100, 60.0)
    positions = [setup.backend._history.append("news", f"n{n}", b"", kept) for n in range(3)]  # kept, not yet delivered
    setup.hub.join(bob, "news", since=Position(positions[0].epoch, 0).token())  # the history has all three: sent now
    for number, position in enumerate(positions):  # then they arrive, each in a pass of its own
        setup.hub.deliver("news", f"n{number}", b"", position)
        setup.run()
    setup.hub.publish("news", "n3")
    setup.run()
    assert [payload for _, payload in bob_peer.messages(4)] == [b"n0", b"n1", b"n2", b"n3"]
    assert [payload for _, payload in alice_peer.messages(4)] == [b"n0", b"n1", b"n2", b"n3"]


@socket_tier
def test_render_runs_once_per_message_for_all_members_of_one_format(setup: Setup) -> None:
    setup.hub.set_history("*", 100)
    calls: list[Delivery] = []

    def render(delivery: Delivery) -> str:
        calls.append(delivery)
        return f"{delivery.position.offset}:{delivery.message!s}"

    peers = []
    for _ in range(4):
        ws, peer = setup.connect()
        setup.hub.join(ws, "g", render=render)
        peers.append(peer)
    setup.hub.publish("g", "hi")
    setup.run()
    assert len(calls) == 1 and all(peer.read_message() == (OP_TEXT, b"1:hi") for peer in peers)


# Users.


@socket_tier
def test_a_user_gets_messages_on_every_connection_and_is_disconnected_everywhere(setup: Setup) -> None:
    # close_timeout: the closes run in the test's thread and wait for an answer that never comes
    (phone, phone_peer), (laptop, laptop_peer), (other, other_peer) = (setup.connect(close_timeout=0.1) for _ in range(3))
    setup.hub.identify(phone, "ann")
    laptop.user = "ann"
    setup.hub.join(laptop, "lobby")  # named before its first join: identified by it
    setup.hub.identify(other, "bob")
    assert setup.hub.groups() == ["lobby"], "users' groups are not listed"
    assert setup.hub.send_to_user("ann", "for ann") == 1
    setup.run()
    assert phone_peer.read_message() == laptop_peer.read_message() == (OP_TEXT, b"for ann")
    assert setup.hub.disconnect_user("ann", 4001, "revoked") == 1
    setup.run()
    for peer in (phone_peer, laptop_peer):
        frame = peer.read_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (OP_CLOSE, close_payload(4001, "revoked"))
    assert setup.hub.send_to_user("nobody", "x") == 0
    setup.hub.send_to_user("bob", "for bob")
    setup.run()
    assert other_peer.read_message() == (OP_TEXT, b"for bob")
