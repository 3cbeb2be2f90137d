"""The hub with a fake backend and fake members: groups, order, leaving, and slow members closed with 1013."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import pytest

from tests.fakes import Spawner
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.exceptions import ConnectionClosed
from wsgi_ws.hub import Hub
from wsgi_ws.protocol.assembler import Message

pytestmark = pytest.mark.unit


class FakeBackend:
    def __init__(self) -> None:
        self.starts = 0
        self.deliver: Callable[[str, Message], None] | None = None
        self.published: list[tuple[str, Message | bytearray | memoryview]] = []

    def start(self, deliver: Callable[[str, Message], None]) -> None:
        self.starts += 1
        self.deliver = deliver

    def publish(self, group: str, message: Message | bytearray | memoryview) -> bool:
        self.published.append((group, message))
        return True


class FakeMember:
    """What the hub uses of a WebSocket."""

    def __init__(self, name: str, fail_after: int | None = None) -> None:
        self.path, self.peer = "/hub", name
        self.received: list[Message] = []
        self.callbacks: list[Callable[[], object]] = []
        self.aborted: tuple[int, str] | None = None
        self.fail_after = fail_after

    def on_finish(self, callback: Callable[[], object]) -> None:
        self.callbacks.append(callback)

    def send(self, message: Message) -> None:
        if self.fail_after is not None and len(self.received) >= self.fail_after:
            raise ConnectionClosed.of(1006)
        self.received.append(message)

    def abort(self, code: int, reason: str) -> None:
        self.aborted = (code, reason)

    def finish(self) -> None:
        for callback in self.callbacks:
            callback()


def make(queue_limit: int = 100) -> tuple[Hub, FakeBackend, Spawner]:
    backend, spawn = FakeBackend(), Spawner()
    return Hub(backend, queue_limit, spawn, pause=lambda: None), backend, spawn


def ws(member: FakeMember) -> WebSocket:
    return cast(WebSocket, member)


def test_members_of_a_group_get_every_message_in_order_and_other_groups_none() -> None:
    hub, backend, spawn = make()
    alice, bob, carol = FakeMember("alice"), FakeMember("bob"), FakeMember("carol")
    hub.join(ws(alice), "lobby")
    hub.join(ws(bob), "lobby")
    hub.join(ws(carol), "kitchen")
    assert backend.starts == 1, "the backend starts once, on the first join"
    assert hub.publish("lobby", "one") and backend.published == [("lobby", "one")]
    assert backend.deliver is not None
    for text in ("one", "two", "three"):
        backend.deliver("lobby", text)
    spawn.run_all()
    assert alice.received == bob.received == ["one", "two", "three"] and carol.received == []
    assert hub.members("lobby") == 2 and hub.members("kitchen") == 1 and hub.members("nowhere") == 0


def test_a_member_leaves_one_group_or_all_when_its_connection_ends() -> None:
    hub, backend, spawn = make()
    alice = FakeMember("alice")
    hub.join(ws(alice), "lobby")
    hub.join(ws(alice), "kitchen")
    hub.leave(ws(alice), "kitchen")
    assert hub.members("kitchen") == 0 and hub.members("lobby") == 1
    alice.finish()  # the connection ended: its on_finish callback leaves every group
    assert hub.members("lobby") == 0
    assert backend.deliver is not None
    backend.deliver("lobby", "after")
    spawn.run_all()
    assert alice.received == []


def test_a_member_whose_connection_closed_while_draining_is_forgotten() -> None:
    hub, backend, spawn = make()
    gone, staying = FakeMember("gone", fail_after=1), FakeMember("staying")
    hub.join(ws(gone), "lobby")
    hub.join(ws(staying), "lobby")
    assert backend.deliver is not None
    backend.deliver("lobby", "a")
    backend.deliver("lobby", "b")
    spawn.run_all()
    assert gone.received == ["a"] and staying.received == ["a", "b"]
    assert hub.members("lobby") == 1


def test_a_member_that_falls_behind_the_queue_limit_is_closed_with_1013(caplog: pytest.LogCaptureFixture) -> None:
    hub, backend, spawn = make(queue_limit=3)
    slow, fast = FakeMember("slow"), FakeMember("fast")
    hub.join(ws(slow), "lobby")
    hub.join(ws(fast), "lobby")
    assert backend.deliver is not None
    with caplog.at_level(logging.WARNING, logger="wsgi_ws"):
        for number in range(3):
            backend.deliver("lobby", str(number))
        fast_drain = [entry for entry in spawn.started if entry[1][0].ws is ws(fast)]
        spawn.started = [entry for entry in spawn.started if entry not in fast_drain]
        for function, args in fast_drain:
            function(*args)  # the fast member drains; the slow one's drain never gets to run
        backend.deliver("lobby", "3")
    assert slow.aborted == (1013, "too slow: fell behind the broadcast")
    assert "fell 3 messages behind" in caplog.text
    assert hub.members("lobby") == 1
    spawn.run_all()
    assert fast.received == ["0", "1", "2", "3"]
