"""Keep-alive with a fake clock and fake connections: when pings go out, when a silent client is closed, per connection."""

from __future__ import annotations

import logging

import pytest

from tests.fakes import Spawner
from wsgi_ws.connection.keepalive import ConnectionMonitor, due, tick_for

pytestmark = pytest.mark.unit


class FakeTransport:
    """The keep-alive state a real Transport keeps, and a read-ahead that may find data."""

    def __init__(self) -> None:
        self.last_received = 0.0
        self.ping_sent_at: float | None = None
        self.keep_alive_busy = False
        self.pending_data_at: float | None = None  # a read-ahead finds data that arrived at this time
        self.read_aheads = 0

    def ping_now(self, frame: bytes) -> bool:
        return False  # the monitor then pings in the background, as these tests expect

    def read_ahead(self) -> None:
        self.read_aheads += 1
        if self.pending_data_at is not None:
            self.last_received = self.pending_data_at
            self.ping_sent_at = None


class FakeConnection:
    """What the monitor needs of a WebSocket, recording what it was asked to do."""

    def __init__(self, interval: float | None = 10.0, timeout: float | None = 5.0) -> None:
        self.transport = FakeTransport()
        self.keep_alive = (interval, timeout)
        self.closed = False
        self.path = "/fake"
        self.peer = "127.0.0.1:1"
        self.pings: list[bytes] = []
        self.aborts: list[tuple[int, str]] = []
        self.closes: list[tuple[int, str | bytes]] = []

    def ping(self, data: bytes = b"") -> None:
        self.pings.append(data)

    def abort(self, code: int, reason: str) -> None:
        self.aborts.append((code, reason))
        self.closed = True

    def close(self, code: int = 1000, reason: str | bytes = "") -> None:
        self.closes.append((code, reason))
        raise ConnectionResetError("already gone")  # close_all must not care


@pytest.mark.parametrize(
    ("interval", "timeout", "tick"),
    [(None, None, 1.0), (120.0, None, 1.0), (0.4, 0.4, 0.1), (2.0, 0.2, 0.05), (0.001, None, 0.01)],
)
def test_the_tick_is_a_quarter_of_the_shortest_time_from_10_ms_to_1_s(interval: float | None, timeout: float | None, tick: float) -> None:
    assert tick_for(interval, timeout) == pytest.approx(tick)


def test_a_silent_connection_is_pinged_after_its_interval_not_before() -> None:
    ws = FakeConnection(interval=10.0)
    assert due(ws, 9.9) is None
    action = due(ws, 10.0)
    assert action is not None and ws.transport.keep_alive_busy
    assert due(ws, 10.5) is None, "no second action while the first is under way"
    action()
    assert ws.pings == [b"keep-alive"] and ws.transport.ping_sent_at == 10.0 and not ws.transport.keep_alive_busy


def test_an_unanswered_ping_closes_with_1011_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    ws = FakeConnection(interval=10.0, timeout=5.0)
    ws.transport.ping_sent_at = 10.0
    assert due(ws, 14.9) is None
    action = due(ws, 15.0)
    assert action is not None
    with caplog.at_level(logging.WARNING, logger="wsgi_ws"):
        action()
    assert ws.transport.read_aheads == 1, "it looks for unread data before giving up"
    assert ws.aborts == [(1011, "keep-alive timeout")]
    assert "ws.timeout path=/fake peer=127.0.0.1:1" in caplog.text and "stopped answering" in caplog.text


def test_data_found_by_the_read_ahead_counts_as_an_answer() -> None:
    ws = FakeConnection(interval=10.0, timeout=5.0)
    ws.transport.ping_sent_at = 10.0
    ws.transport.pending_data_at = 12.0  # a pong the busy handler has not read yet
    action = due(ws, 15.0)
    assert action is not None
    action()
    assert ws.aborts == [] and ws.transport.ping_sent_at is None and not ws.transport.keep_alive_busy


def test_without_a_timeout_an_unanswered_ping_waits_for_ever() -> None:
    ws = FakeConnection(interval=10.0, timeout=None)
    ws.transport.ping_sent_at = 10.0
    assert due(ws, 10_000.0) is None


def test_closed_connections_and_connections_without_pings_are_left_alone() -> None:
    closed = FakeConnection()
    closed.closed = True
    assert due(closed, 1000.0) is None
    assert due(FakeConnection(interval=None), 1000.0) is None


def test_each_connection_keeps_alive_by_its_own_settings() -> None:
    spawn = Spawner()
    monitor = ConnectionMonitor(spawn, sleep=lambda seconds: None, clock=lambda: 0.0)
    chat, upload = FakeConnection(interval=30.0), FakeConnection(interval=5.0, timeout=1.0)
    monitor.add(chat)
    assert monitor.tick == pytest.approx(1.0) and len(spawn.started) == 1, "the loop starts with the first connection"
    monitor.add(upload)
    assert monitor.tick == pytest.approx(0.25), "the tick follows the shortest keep-alive time"
    spawn.started.clear()
    monitor.check(6.0)
    assert spawn.run_all() == 1
    assert upload.pings == [b"keep-alive"] and chat.pings == []
    monitor.check(31.0)
    spawn.run_all()
    assert chat.pings == [b"keep-alive"]


def test_the_loop_starts_only_for_a_connection_with_pings_on() -> None:
    spawn = Spawner()
    monitor = ConnectionMonitor(spawn)
    monitor.add(FakeConnection(interval=None))
    assert spawn.started == [] and len(monitor) == 1


def test_the_loop_looks_once_per_tick_until_stopped() -> None:
    now = [0.0]
    spawn = Spawner()

    class StopAfterFirstAction(ConnectionMonitor):
        def check(self, now: float) -> None:
            super().check(now)
            if spawn.run_all():
                self.stopping = True

    monitor = StopAfterFirstAction(spawn, sleep=lambda seconds: now.__setitem__(0, now[0] + seconds), clock=lambda: now[0])
    ws = FakeConnection(interval=2.0, timeout=None)
    monitor.add(ws)
    spawn.started.clear()
    monitor.run()
    assert ws.pings == [b"keep-alive"] and now[0] == pytest.approx(2.0)


def test_close_all_closes_every_connection_quietly_and_stops_the_loop() -> None:
    spawn = Spawner()
    monitor = ConnectionMonitor(spawn)
    connections = [FakeConnection(interval=None) for _ in range(3)]
    for ws in connections:
        monitor.add(ws)
    assert monitor.close_all(1001, "server shutting down") == 3
    assert monitor.stopping
    assert spawn.run_all() == 3  # each close raises ConnectionResetError: suppressed
    assert all(ws.closes == [(1001, "server shutting down")] for ws in connections)
    monitor.discard(connections[0])
    assert len(monitor) == 2
