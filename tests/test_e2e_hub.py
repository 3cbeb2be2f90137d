"""The broadcast hub end to end: groups in one worker (memory), across two workers and outside publishers (Redis)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisCluster, RedisServer
from tests.server import GunicornServer
from tests.waiting import wait_until
from tests.wsclient import OP_CLOSE, OP_TEXT, RawClient, close_payload
from wsgi_ws.hub import publish

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it"),
]

ROUTES = "tests.apps.routes:app"


def join(stack: ExitStack, server: GunicornServer, group: str) -> tuple[ClientConnection, int]:
    """Connect to the group; returns the connection and the pid of the worker serving it."""
    ws = stack.enter_context(connect(f"{server.url}/hub/{group}", open_timeout=TIMEOUT, max_size=None))
    return ws, json.loads(ws.recv(timeout=TIMEOUT))["pid"]


def members(server: GunicornServer, group: str, count: str = "members") -> int:
    """Members of ``group`` in the worker that answers; with ``count="workers"``, workers anywhere that have some."""
    with urllib.request.urlopen(f"{server.http_url}/hub-members/{group}", timeout=TIMEOUT) as response:
        return int(json.load(response)[count])


def hub_stats(server: GunicornServer) -> dict[str, Any]:
    """The counters of the (one) worker's hub, and the groups it has members of."""
    with urllib.request.urlopen(f"{server.http_url}/hub-stats", timeout=TIMEOUT) as response:
        stats: dict[str, Any] = json.load(response)
        return stats


# In memory, one worker.


def test_memory_hub_delivers_to_every_member_in_order_and_forgets_closed_ones(test_app_server: GunicornServer) -> None:
    with ExitStack() as stack:
        clients = [join(stack, test_app_server, "room")[0] for _ in range(3)]
        for number in range(100):
            clients[number % 3].send(f"#{number}" if number % 2 else f"#{number}".encode())
        expected = [f"#{n}" if n % 2 else f"#{n}".encode() for n in range(100)]
        for ws in clients:
            got = [ws.recv(timeout=TIMEOUT) for _ in range(100)]
            assert sorted(got, key=lambda m: int(m[1:])) == expected, "everything arrives, text as text, binary as binary"
            for publisher in range(3):  # in order per publisher (publishers race each other)
                mine = [m for m in got if int(m[1:]) % 3 == publisher]
                assert mine == [m for m in expected if int(m[1:]) % 3 == publisher]
        assert members(test_app_server, "room") == 3
        clients[0].close()
        clients[1].send("after one left")
        assert clients[2].recv(timeout=TIMEOUT) == "after one left"
        assert clients[1].recv(timeout=TIMEOUT) == "after one left"
        assert members(test_app_server, "room") == 2


def test_groups_are_separate(test_app_server: GunicornServer) -> None:
    with ExitStack() as stack:
        red, _ = join(stack, test_app_server, "red")
        blue, _ = join(stack, test_app_server, "blue")
        red.send("for red")
        blue.send("for blue")
        assert red.recv(timeout=TIMEOUT) == "for red"
        assert blue.recv(timeout=TIMEOUT) == "for blue"


def test_slow_consumer_is_closed_with_1013_and_the_others_keep_pace(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WS_HUB_QUEUE_LIMIT="1000", WS_HUB_QUEUE_BYTES="64MiB", WS_CLOSE_TIMEOUT="20")
    count, size = 5000, 4096
    with ExitStack() as stack:
        reader, _ = join(stack, server, "flood")
        sleeper, _ = join(stack, server, "flood")  # never reads
        received: list[bytes] = []

        def read_all() -> None:
            for _ in range(count):
                message = reader.recv(timeout=3 * TIMEOUT)
                assert isinstance(message, bytes)
                received.append(message[:8])

        thread = threading.Thread(target=read_all)
        thread.start()
        reader.send(f"flood {count} {size} 2000")  # 8 MB/s: the reader keeps up even on a busy machine
        thread.join(6 * TIMEOUT)
        assert received == [f"{n:08d}".encode() for n in range(count)]
        with pytest.raises(ConnectionClosed) as closed:  # it reads slowly: whole frames, then the 1013
            while True:
                message = sleeper.recv(timeout=TIMEOUT)
                assert isinstance(message, bytes) and len(message) == size
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, "told why, never cut mid-frame"
    assert "fell behind the broadcast" in server.log() and "messages behind; closing it with 1013" in server.log()
    assert members(server, "flood") == 0


def test_a_member_that_never_reads_is_cut_after_close_timeout_and_nobody_slows_down(start_server: ServerFactory) -> None:
    server = start_server(ROUTES, WS_HUB_QUEUE_LIMIT="100", WS_CLOSE_TIMEOUT="1")
    count, size = 2000, 4096
    with ExitStack() as stack, RawClient(server.port) as stuck:
        stuck.handshake("/hub/flood")
        assert json.loads(stuck.read_message()[1])["pid"]  # joined; from now on it reads nothing
        reader, _ = join(stack, server, "flood")
        reader.send(f"flood {count} {size} 4000")
        received = [reader.recv(timeout=TIMEOUT) for _ in range(count)]
        assert [message[:8] for message in received] == [f"{n:08d}".encode() for n in range(count)]
        wait_until(lambda: "code=1013" in server.log(), "the stuck member was not closed")
        stuck.sock.settimeout(TIMEOUT)
        while stuck.sock.recv(1 << 20):  # what was in flight, then the end: TCP was cut
            pass
    assert members(server, "flood") == 0 and hub_stats(server)["hub_closed_slow"] == 1


def test_clients_that_leave_during_a_broadcast_end_quietly(start_server: ServerFactory) -> None:
    """Each sends its close frame and drops TCP at once while the hub is still writing to it (a reset follows)."""
    server = start_server(ROUTES)
    with ExitStack() as stack:
        leaving = [stack.enter_context(RawClient(server.port)) for _ in range(30)]
        for client in leaving:
            client.handshake("/hub/busy")
            client.read_message()
        leaving[-1].send_frame(OP_TEXT, b"flood 5000 1024 200000")
        for index, client in enumerate(leaving):
            for _ in range(index * 5):
                client.read_message()
            client.send_frame(OP_CLOSE, close_payload(1001, "bye"))
            client.sock.close()  # with unread data: the kernel answers the server's next write with a reset
        wait_until(lambda: members(server, "busy") == 0, "the members that left are still members")
    log = server.log()
    assert "Traceback" not in log and "EOFError" not in log and "code=1011" not in log, log[-3000:]


# Redis: per-group subscriptions, several machines (gunicorn masters) sharing one Redis, a Redis Cluster.


def test_a_worker_subscribes_only_to_the_groups_it_has_members_of(start_server: ServerFactory, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    first, second = (start_server(ROUTES, WS_HUB_URL=redis_server.url, WSGI_WS_WORKERS="1") for _ in range(2))
    with ExitStack() as stack:
        alpha, _ = join(stack, first, "alpha")
        join(stack, second, "beta")
        assert client.pubsub_numpat() == 0, "no pattern subscription"
        assert dict(client.pubsub_numsub("wsgi_ws:alpha", "wsgi_ws:beta")) == {b"wsgi_ws:alpha": 1, b"wsgi_ws:beta": 1}
        for number in range(50):
            assert publish(redis_server.url, "alpha", f"a{number}") == 1, "one worker has members of alpha"
        assert [alpha.recv(timeout=TIMEOUT) for _ in range(50)] == [f"a{n}" for n in range(50)]
        assert hub_stats(first)["hub_received"] == 50 and hub_stats(first)["groups"] == ["alpha"]
        assert hub_stats(second)["hub_received"] == 0, "the other machine received none of alpha's traffic"
        assert members(second, "alpha", "workers") == 1, "the machine without members knows one worker has some"
        assert publish(redis_server.url, "nobody", "lost") == 0
        alpha.close()
        wait_until(lambda: dict(client.pubsub_numsub("wsgi_ws:alpha"))[b"wsgi_ws:alpha"] == 0, "alpha is still subscribed")
        assert hub_stats(first)["groups"] == []


def test_exclude_skips_the_sender_on_every_worker(redis_hub_server: GunicornServer) -> None:
    with ExitStack() as stack:
        clients = connect_to_both_workers(stack, redis_hub_server, "quiet")
        sender = stack.enter_context(connect(f"{redis_hub_server.url}/hub/quiet?exclude=1", open_timeout=TIMEOUT))
        sender.recv(timeout=TIMEOUT)
        sender.send("not for me")
        sender.send("nor this")
        for ws in clients:
            assert [ws.recv(timeout=TIMEOUT) for _ in range(2)] == ["not for me", "nor this"]
        clients[0].send("for everyone")
        assert sender.recv(timeout=TIMEOUT) == "for everyone", "its own messages never came back before this one"


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    yield cluster
    cluster.stop()


def test_a_redis_cluster_uses_sharded_pub_sub_and_reaches_every_machine(start_server: ServerFactory, redis_cluster: RedisCluster) -> None:
    machines = [start_server(ROUTES, WS_HUB_URL=redis_cluster.url, WSGI_WS_WORKERS="1") for _ in range(2)]
    groups = [f"room{n}" for n in range(6)]  # their channels hash to slots on different masters
    with ExitStack() as stack:
        members_of = {group: [join(stack, machine, group)[0] for machine in machines] for group in groups}
        for group in groups:
            for number in range(20):
                assert publish(redis_cluster.url, group, f"{group} {number}") == 2, "both machines have members"
        for group, clients in members_of.items():
            for ws in clients:
                assert [ws.recv(timeout=TIMEOUT) for _ in range(20)] == [f"{group} {n}" for n in range(20)]
        shards = [redis_cluster.cli(node, "PUBSUB", "SHARDCHANNELS") for node in redis_cluster.nodes]
        assert sum(bool(out.strip()) for out in shards) >= 2, "the groups live on more than one shard"
        for node in redis_cluster.nodes:
            assert redis_cluster.cli(node, "PUBSUB", "NUMPAT").strip() == "0"
            assert redis_cluster.cli(node, "PUBSUB", "CHANNELS").strip() == "", "no unsharded channel"
        assert members(machines[0], "room3", "workers") == 2 and members(machines[1], "nowhere", "workers") == 0
        clients = members_of["room0"]
        clients[0].send("from a member")
        assert [ws.recv(timeout=TIMEOUT) for ws in clients] == ["from a member"] * 2


# Redis, two workers, publishers outside gunicorn.


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_hub_server(redis_server: RedisServer) -> Iterator[GunicornServer]:
    server = GunicornServer(ROUTES, env={"WS_HUB_URL": redis_server.url, "WSGI_WS_WORKERS": "2"})
    yield server
    server.stop()


def connect_to_both_workers(stack: ExitStack, server: GunicornServer, group: str) -> list[ClientConnection]:
    """Open connections until both workers serve at least two each (the kernel spreads accepts; bounded tries)."""
    clients: dict[int, list[ClientConnection]] = {}
    for _ in range(60):
        ws, pid = join(stack, server, group)
        clients.setdefault(pid, []).append(ws)
        if len(clients) == 2 and all(len(group_clients) >= 2 for group_clients in clients.values()):
            return [ws for group_clients in clients.values() for ws in group_clients]
    raise AssertionError(f"connections did not reach two workers: {list(clients)}")


def test_clients_on_different_workers_all_receive_every_message(redis_hub_server: GunicornServer) -> None:
    with ExitStack() as stack:
        clients = connect_to_both_workers(stack, redis_hub_server, "across")
        for index, ws in enumerate(clients):
            ws.send(f"from client {index}")
            expected = f"from client {index}"
            for other in clients:
                assert other.recv(timeout=TIMEOUT) == expected
        clients[0].send(b"\xffbinary through redis")
        for other in clients:
            assert other.recv(timeout=TIMEOUT) == b"\xffbinary through redis"


def test_a_plain_python_process_can_publish(redis_hub_server: GunicornServer, redis_server: RedisServer) -> None:
    with ExitStack() as stack:
        clients = connect_to_both_workers(stack, redis_hub_server, "news")
        for number in range(20):
            publish(redis_server.url, "news", f"bulletin {number}")
        for ws in clients:
            assert [ws.recv(timeout=TIMEOUT) for _ in range(20)] == [f"bulletin {n}" for n in range(20)]


def test_delivery_resumes_after_redis_restarts(redis_hub_server: GunicornServer, redis_server: RedisServer) -> None:
    with ExitStack() as stack:
        clients = connect_to_both_workers(stack, redis_hub_server, "restart")
        clients[0].send("before")
        for ws in clients:
            assert ws.recv(timeout=TIMEOUT) == "before"
        log_before = redis_hub_server.log().count("reconnected to Redis")
        redis_server.stop()
        redis_server.start()
        deadline = time.monotonic() + 3 * TIMEOUT
        while redis_hub_server.log().count("reconnected to Redis") < log_before + 2:  # both workers resubscribed
            assert time.monotonic() < deadline, redis_hub_server.log()[-2000:]
            time.sleep(0.05)
        clients[-1].send("after")
        for ws in clients:
            assert ws.recv(timeout=TIMEOUT) == "after"
    log = redis_hub_server.log()
    assert "lost Redis at" in log and "the others lost what was published meanwhile" in log
