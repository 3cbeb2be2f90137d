"""Presence: in memory (unit); in Redis with real redis-server processes (e2e): workers, a dead worker, restarts, stop."""

from __future__ import annotations

import json
import logging
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisServer
from tests.waiting import wait_until
from wsgi_ws.hub.presence import ALIVE_PREFIX, EVENTS_PREFIX, KEY_PREFIX, MemoryPresence, PresenceEntry, RedisPresence

needs_redis = pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it")

#: Seconds between heartbeats of the test workers: a dead worker's entries must vanish within twice that.
HEARTBEAT = 0.2
#: Seconds of leeway for the polling and the machine's load on top of a bound the design promises.
SLACK = 1.0

Event = tuple[str, str, PresenceEntry]


def spawn(function: Callable[..., Any], *args: Any) -> None:
    threading.Thread(target=function, args=args, daemon=True).start()


def entry(connection: str, worker: str, joined: float, user: str | None = None) -> PresenceEntry:
    return PresenceEntry(connection, user, worker, joined)


class Events:
    """An ``on_event`` that queues what it gets."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Event] = queue.Queue()

    def __call__(self, kind: str, group: str, entry: PresenceEntry) -> None:
        self.queue.put((kind, group, entry))

    def next(self) -> Event:
        return self.queue.get(timeout=TIMEOUT)

    def take(self, count: int) -> list[Event]:
        return [self.next() for _ in range(count)]


class Clock:
    """The workers' sleep: counts the heartbeats, and can freeze the heartbeat (as a SIGKILL would) and thaw it."""

    def __init__(self) -> None:
        self.beats = 0
        self.frozen = self.parked = False
        self.changed = threading.Condition()

    def __call__(self, seconds: float) -> None:
        with self.changed:
            while self.frozen:
                self.parked = True
                self.changed.notify_all()
                self.changed.wait()
            self.parked = False
        time.sleep(seconds)
        with self.changed:
            self.beats += 1
            self.changed.notify_all()

    def freeze(self) -> None:
        """Returns once the heartbeat is parked: its last command went out before."""
        with self.changed:
            self.frozen = True
            assert self.changed.wait_for(lambda: self.parked, TIMEOUT), "the heartbeat did not park"

    def thaw(self) -> None:
        with self.changed:
            self.frozen = False
            self.changed.notify_all()

    def wait_beats(self, count: int) -> None:
        with self.changed:
            target = self.beats + count
            assert self.changed.wait_for(lambda: self.beats >= target, TIMEOUT), "no heartbeat"


class Worker(NamedTuple):
    presence: RedisPresence
    events: Events
    clock: Clock
    name: str


WorkerFactory = Callable[[str], Worker]


def client_of(server: RedisServer) -> redis.Redis:
    """A client that fails fast while the server is down (one retry, no back-off)."""
    return redis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 1))


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[WorkerFactory]:
    """Make started RedisPresence "workers" on the server; each is stopped (and thawed) afterwards."""
    made: list[Worker] = []

    def make(name: str) -> Worker:
        clock, events = Clock(), Events()
        presence = RedisPresence(client_of(redis_server), name, spawn, clock, heartbeat=HEARTBEAT)
        presence.start(events)
        made.append(worker := Worker(presence, events, clock, name))
        return worker

    yield make
    for worker in made:
        worker.presence.stop()
        worker.clock.thaw()


# In memory.


@pytest.mark.unit
def test_memory_presence_lists_oldest_first_and_tells_watchers_synchronously(caplog: pytest.LogCaptureFixture) -> None:
    presence, events = MemoryPresence(), Events()
    presence.start(events)
    late, early = entry("c2", "w", 2.0, "bob"), entry("c1", "w", 1.0, "alice")
    presence.add("room", late)
    presence.add("room", early)
    assert presence.members("room") == [early, late] and presence.members("elsewhere") == []
    assert events.queue.empty(), "nobody watches the room yet"
    presence.watch("room")
    presence.watch("room")  # calls nest
    third = entry("c3", "w", 3.0)
    presence.add("room", third)
    presence.add("room", third)  # already in: no second join
    presence.remove("room", early)
    presence.remove("room", early)  # already gone: no second leave
    presence.add("other", entry("c4", "w", 4.0))  # not watched
    assert list(events.queue.queue) == [("join", "room", third), ("leave", "room", early)]
    presence.unwatch("room")
    presence.remove("room", late)
    assert events.queue.qsize() == 3, "still watched once"
    presence.unwatch("room")
    presence.remove("room", third)
    assert events.queue.qsize() == 3 and presence.members("room") == []

    def broken(kind: str, group: str, entry: PresenceEntry) -> None:
        raise RuntimeError("app bug")

    presence.start(broken)
    presence.watch("room")
    with caplog.at_level(logging.ERROR, logger="wsgi_ws"):
        presence.add("room", early)  # the callback's error is logged, not raised into add
    assert "the on_event callback failed" in caplog.text
    presence.stop()
    assert presence.members("room") == [] and presence.members("other") == []


@pytest.mark.unit
def test_importing_presence_does_not_need_redis() -> None:
    code = "import sys, wsgi_ws.hub.presence; print('redis' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "False"


# In Redis.


@pytest.mark.e2e
@needs_redis
@pytest.mark.timeout(60)
def test_two_workers_see_each_others_entries_and_watchers_hear_every_change(workers: WorkerFactory, redis_server: RedisServer) -> None:
    a, b = workers("host1:11:aaaa"), workers("host2:22:bbbb")
    a.presence.watch("room")
    a1, b1, a2 = entry("a1", a.name, 100.0, "alice"), entry("b1", b.name, 50.0), entry("a2", a.name, 200.0, "ann")
    a.presence.add("room", a1)
    b.presence.add("room", b1)
    a.presence.add("room", a2)
    assert a.events.take(3) == [("join", "room", a1), ("join", "room", b1), ("join", "room", a2)], "its own too"
    assert a.presence.members("room") == b.presence.members("room") == [b1, a1, a2]

    b.presence.remove("room", b1)
    b.presence.remove("room", b1)  # gone already: no second leave
    a3 = entry("a3", a.name, 300.0)
    a.presence.add("room", a3)
    assert a.events.take(2) == [("leave", "room", b1), ("join", "room", a3)]
    assert b.presence.members("room") == [a1, a2, a3]

    b.presence.watch("room")
    a.presence.remove("room", a1)
    assert a.events.next() == b.events.next() == ("leave", "room", a1)

    a.presence.unwatch("room")
    a.presence.watch("lobby")
    b2, b3 = entry("b2", b.name, 400.0), entry("b3", b.name, 500.0)
    b.presence.add("room", b2)  # a no longer watches the room
    b.presence.add("lobby", b3)
    assert a.events.next() == ("join", "lobby", b3)
    assert b.events.next() == ("join", "room", b2)
    assert a.presence.members("lobby") == [b3]

    direct = client_of(redis_server)
    stored = direct.hgetall(KEY_PREFIX + "room")
    assert json.loads(stored[b"b2"]) == {"user": None, "worker": b.name, "joined": 400.0}
    assert 0 < direct.ttl(KEY_PREFIX + "room") <= 86400, "abandoned groups expire"
    assert 0 < direct.pttl(ALIVE_PREFIX + a.name) <= 1500 * HEARTBEAT


@pytest.mark.e2e
@needs_redis
@pytest.mark.timeout(60)
def test_a_dead_workers_entries_vanish_within_two_heartbeats_with_one_leave_each(workers: WorkerFactory) -> None:
    a, b, c = workers("host:1:aaaa"), workers("host:2:bbbb"), workers("host:3:cccc")
    a.presence.watch("room")
    c.presence.watch("room")
    mine = entry("a1", a.name, 1.0)
    a.presence.add("room", mine)
    theirs = [entry(f"b{n}", b.name, 10.0 + n, f"user{n}") for n in range(3)]
    for item in theirs:
        b.presence.add("room", item)
    b.presence.add("unwatched", entry("b9", b.name, 19.0))
    for watcher in (a, c):
        assert watcher.events.take(4) == [("join", "room", mine)] + [("join", "room", item) for item in theirs]

    b.clock.freeze()  # B stops beating, as if killed: no stop(), its entries stay behind in Redis
    frozen_at = time.monotonic()
    racing = threading.Event()

    def race() -> None:  # another worker asking all the time races the reapers of A and C
        while not racing.is_set():
            c.presence.members("room")

    spawn(race)
    wait_until(lambda: a.presence.members("room") == [mine], "B's entries are still listed")
    assert time.monotonic() - frozen_at <= 2 * HEARTBEAT + SLACK
    for watcher in (a, c):
        leaves = watcher.events.take(3)
        assert sorted(leaves, key=lambda event: event[2].connection) == [("leave", "room", item) for item in theirs]
    for watcher in (a, c):
        watcher.clock.wait_beats(3)  # more reaping passes: nothing is announced twice
    racing.set()
    last = entry("a2", a.name, 2.0)
    a.presence.add("room", last)
    assert a.events.next() == c.events.next() == ("join", "room", last), "no second leave before it"
    assert a.presence.members("unwatched") == [], "members() reaps groups nobody watches"


@pytest.mark.e2e
@needs_redis
@pytest.mark.timeout(60)
def test_a_worker_reaped_while_stalled_adds_its_entries_again_when_it_resumes(workers: WorkerFactory) -> None:
    a, b = workers("host:1:aaaa"), workers("host:2:bbbb")
    a.presence.watch("room")
    item = entry("b1", b.name, 1.0)
    b.presence.add("room", item)
    assert a.events.next() == ("join", "room", item)
    b.clock.freeze()
    assert a.events.next() == ("leave", "room", item), "A's reaper announces it without anyone calling members()"
    b.clock.thaw()
    assert a.events.next() == ("join", "room", item), "B's heartbeat found its alive key missing"
    assert a.presence.members("room") == [item]


@pytest.mark.e2e
@needs_redis
@pytest.mark.timeout(90)
def test_redis_restarting_empty_loses_no_entries_of_live_workers(
    workers: WorkerFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsgi_ws")
    a, b = workers("host:1:aaaa"), workers("host:2:bbbb")
    b.presence.watch("room")
    a1, a2, b1 = entry("a1", a.name, 1.0), entry("a2", a.name, 2.0), entry("b1", b.name, 3.0)
    a.presence.add("room", a1)
    a.presence.add("room", a2)
    b.presence.add("room", b1)
    assert len(b.events.take(3)) == 3

    redis_server.stop()
    a3, a4 = entry("a3", a.name, 4.0), entry("a4", a.name, 5.0)
    a.presence.add("room", a3)  # none of these raises
    a.presence.remove("room", a1)
    a.presence.add("room", a4)
    with pytest.raises(redis.RedisError):
        a.presence.members("room")
    a.clock.wait_beats(3)
    b.clock.wait_beats(3)
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("presence: Redis at") and "failed" in r.getMessage()]
    assert len(failed) == 2, f"one warning per worker per outage: {failed}"

    redis_server.start()  # empty: no persistence
    expected = [a2, b1, a3, a4]
    wait_until(lambda: b.presence.members("room") == expected, "the entries did not come back")
    assert a.presence.members("room") == expected, "a1's removal was retried"
    wait_until(lambda: "is back after" in caplog.text, "no word that Redis is back")
    direct = client_of(redis_server)
    wait_until(lambda: direct.pubsub_numsub(EVENTS_PREFIX + "room")[0][1] == 1, "B did not subscribe again")
    a5 = entry("a5", a.name, 6.0)
    a.presence.add("room", a5)
    a.presence.remove("room", a2)
    while (event := b.events.next()) != ("join", "room", a5):  # before it: the re-adds' joins, if B was back in time
        assert event[0] == "join" and event[2] in expected, event
    assert b.events.next() == ("leave", "room", a2)


@pytest.mark.e2e
@needs_redis
@pytest.mark.timeout(60)
def test_stop_removes_this_workers_entries_and_its_alive_key(workers: WorkerFactory, redis_server: RedisServer) -> None:
    a, b = workers("host:1:aaaa"), workers("host:2:bbbb")
    a.presence.watch("room")
    mine, theirs = entry("a1", a.name, 1.0), [entry("b1", b.name, 2.0), entry("b2", b.name, 3.0)]
    a.presence.add("room", mine)
    for item in theirs:
        b.presence.add("room", item)
    b.presence.add("lobby", entry("b3", b.name, 4.0))
    assert len(a.events.take(3)) == 3
    b.presence.stop()
    assert sorted(a.events.take(2)) == [("leave", "room", item) for item in theirs]
    assert a.presence.members("room") == [mine] and a.presence.members("lobby") == []
    direct = client_of(redis_server)
    assert not direct.exists(ALIVE_PREFIX + b.name) and not direct.exists(KEY_PREFIX + "lobby")
    b.presence.add("room", entry("b4", b.name, 5.0))  # after stop: ignored
    assert a.presence.members("room") == [mine]
