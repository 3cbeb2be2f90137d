"""The broadcast hub end to end: groups in one worker (memory), across two workers and outside publishers (Redis)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisServer
from tests.server import GunicornServer
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


def members(server: GunicornServer, group: str) -> int:
    with urllib.request.urlopen(f"{server.http_url}/hub-members/{group}", timeout=TIMEOUT) as response:
        return int(json.load(response)["members"])


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
    server = start_server(ROUTES, WS_HUB_QUEUE_LIMIT="1000")
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
        with pytest.raises(ConnectionClosed):  # the sleeper finds its connection ended once it looks
            while True:
                sleeper.recv(timeout=TIMEOUT)
    assert "fell 1000 messages behind; closing it with 1013" in server.log()
    assert members(server, "flood") == 0


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
    assert "lost Redis at" in log and "messages published until it is back are lost" in log
