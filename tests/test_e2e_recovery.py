"""Recoverable groups end to end: the sample's /feed/<group> over real Redis, clients that resume, Redis going away."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
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
from wsgi_ws.hub import disconnect_user, publish, send_to_user

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it"),
]


def publish_kept(url: str, group: str, text: str, size: int = 1000) -> int:
    """Publish as the workers keep the group's history (the sample's 1,000 messages, or ``size``)."""
    return publish(url, group, text, history_size=size, history_ttl=300.0)


def feed(server: GunicornServer, group: str, since: str | None = None) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect to /feed/<group> (resuming from ``since``); the connection and its ``joined`` frame."""
    query = f"?since={urllib.parse.quote(since)}" if since is not None else ""
    ws = connect(f"{server.url}/feed/{group}{query}", open_timeout=TIMEOUT).__enter__()  # the caller closes it
    joined = json.loads(ws.recv(timeout=TIMEOUT))
    assert joined["type"] == "joined"
    return ws, joined


def messages(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    got = [json.loads(ws.recv(timeout=TIMEOUT)) for _ in range(count)]
    assert all(item["type"] == "message" for item in got), got
    return got


def stats(server: GunicornServer) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.http_url}/stats", timeout=TIMEOUT) as response:
        values: dict[str, int] = json.load(response)
        return values


def test_a_client_that_resumes_gets_exactly_what_it_missed_then_the_live_stream(
    start_server: ServerFactory, redis_server: RedisServer
) -> None:
    server = start_server(WS_HUB_URL=redis_server.url, WSGI_WS_WORKERS="2")
    ws, joined = feed(server, "news")
    assert joined["recovered"] is True and joined["missed"] == 0 and joined["position"].endswith("-0")
    for number in range(5):
        publish_kept(redis_server.url, "news", f"m{number}")
    seen = messages(ws, 5)
    assert [item["data"] for item in seen] == ["m0", "m1", "m2", "m3", "m4"]
    ws.close()
    ws, rejoined = feed(server, "news", since=joined["position"])
    ws.close()
    assert rejoined["recovered"] is True and rejoined["missed"] == 5, "from before the first publish: everything"
    for number in range(5, 12):  # published while the client is away
        publish_kept(redis_server.url, "news", f"m{number}")
    ws, joined = feed(server, "news", since=seen[-1]["position"])
    with ws:
        assert joined["recovered"] is True and joined["missed"] == 7
        ws.send("m12")  # published by the client itself: live, after the replay
        got = messages(ws, 8)
        assert [item["data"] for item in got] == [f"m{number}" for number in range(5, 13)]
        positions = [item["position"] for item in seen + got]
        assert len(set(positions)) == 13, "every message has its own position"
        assert [int(position.rpartition("-")[2]) for position in positions] == list(range(1, 14))


def test_a_position_the_history_no_longer_reaches_is_not_recovered(start_server: ServerFactory, redis_server: RedisServer) -> None:
    server = start_server(WS_HUB_URL=redis_server.url, WS_HUB_HISTORY_SIZE="3")
    ws, _ = feed(server, "short")
    publish_kept(redis_server.url, "short", "first", size=3)
    (first,) = messages(ws, 1)
    ws.close()
    for number in range(10):
        publish_kept(redis_server.url, "short", f"later {number}", size=3)
    ws, joined = feed(server, "short", since=first["position"])
    with ws:
        assert joined["recovered"] is False, "7 messages are gone: the client must be told"
        assert joined["missed"] == 3 and [item["data"] for item in messages(ws, 3)] == ["later 7", "later 8", "later 9"]
    ws, joined = feed(server, "short", since="not a position")
    with ws:
        assert joined["recovered"] is False and joined["missed"] == 0


def test_after_redis_restarts_empty_resuming_clients_and_live_members_are_told(
    start_server: ServerFactory, redis_server: RedisServer
) -> None:
    server = start_server(WS_HUB_URL=redis_server.url)
    live, _ = feed(server, "epochs")
    publish_kept(redis_server.url, "epochs", "before")
    (before,) = messages(live, 1)
    redis_server.stop()
    redis_server.start()  # same port, no data: a new epoch
    with live:
        lost = json.loads(live.recv(timeout=TIMEOUT))  # the worker reconnects, finds the history gone, and says so
        assert lost["type"] == "joined" and lost["recovered"] is False
        wait_until(lambda: publish_kept(redis_server.url, "epochs", "after") == 1, "the worker subscribed again")
        (after,) = messages(live, 1)
        assert after["data"] == "after" and after["position"].rpartition("-")[0] != before["position"].rpartition("-")[0]
    ws, joined = feed(server, "epochs", since=before["position"])
    with ws:
        assert joined["recovered"] is False, "the old epoch's history is gone"


def test_a_worker_cut_off_from_redis_replays_what_its_members_missed(start_server: ServerFactory, redis_server: RedisServer) -> None:
    server = start_server(WS_HUB_URL=redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    with feed(server, "blip")[0] as ws:
        publish_kept(redis_server.url, "blip", "0")
        assert messages(ws, 1)[0]["data"] == "0"
        # The worker may come back only once all 20 are kept, so they come from the history and not live, however slow
        # the publishing (its subscriber reconnects after 0.1 s): the default user takes no new connection meanwhile
        # (the ones open stay), and another user publishes.
        client.acl_setuser("publisher", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"], commands=["+@all"])
        client.acl_setuser("default", enabled=False)
        assert client.client_kill_filter(_type="pubsub") == 1  # the worker's subscriber
        for number in range(1, 21):  # reach no subscriber: kept in the stream
            publish_kept(f"redis://publisher:secret@127.0.0.1:{redis_server.port}/0", "blip", str(number))
        client.acl_setuser("default", enabled=True)
        got = messages(ws, 20)
        assert [item["data"] for item in got] == [str(number) for number in range(1, 21)]
    counters = stats(server)
    assert counters["hub_filled"] >= 1 and counters["hub_lost"] == 0, counters
    assert "caught up with" in server.log()


def test_resuming_works_in_memory_within_one_worker(start_server: ServerFactory) -> None:
    server = start_server()
    first, joined = feed(server, "local")
    assert joined["recovered"] is True
    with feed(server, "local")[0] as publisher:
        for number in range(3):
            publisher.send(f"x{number}")
        seen = messages(first, 3)
        first.close()
        publisher.send("while away")
        ws, joined = feed(server, "local", since=seen[0]["position"])
        with ws:
            assert joined["recovered"] is True and joined["missed"] == 3
            assert [item["data"] for item in messages(ws, 3)] == ["x1", "x2", "while away"]


# Users, across two gunicorn masters (two "machines") sharing one Redis.


def test_a_users_connections_on_two_machines_get_its_messages_and_are_all_disconnected(
    start_server: ServerFactory, redis_server: RedisServer
) -> None:
    machines = [start_server("tests.apps.routes:app", WS_HUB_URL=redis_server.url) for _ in range(2)]
    with ExitStack() as stack:
        ann = [stack.enter_context(connect(f"{m.url}/hub/room?user=ann", open_timeout=TIMEOUT)) for m in machines]
        bob = stack.enter_context(connect(f"{machines[0].url}/hub/room?user=bob", open_timeout=TIMEOUT))
        for ws in (*ann, bob):
            assert "pid" in json.loads(ws.recv(timeout=TIMEOUT))
        assert send_to_user(redis_server.url, "ann", "just for ann") == 2
        assert [ws.recv(timeout=TIMEOUT) for ws in ann] == ["just for ann"] * 2
        request = urllib.request.Request(f"{machines[1].http_url}/users/ann/disconnect?code=4003&reason=revoked", method="POST")
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert json.load(response) == {"workers": 2}
        for ws in ann:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert ws.close_code == 4003 and ws.close_reason == "revoked"
        elapsed = time.monotonic() - started
        bob.send("still here")
        assert bob.recv(timeout=TIMEOUT) == "still here", "another user's connection is untouched"
        assert disconnect_user(redis_server.url, "nobody") == 0
    print(f"disconnect_user closed 2 connections on 2 machines in {elapsed * 1000:.0f} ms")


def test_resuming_works_on_a_redis_cluster(start_server: ServerFactory) -> None:
    cluster = RedisCluster()
    try:
        server = start_server(WS_HUB_URL=cluster.url)
        groups = [f"shard{n}" for n in range(4)]  # on more than one master
        seen = {}
        for group in groups:
            ws, joined = feed(server, group)
            with ws:
                for number in range(3):
                    publish(cluster.url, group, f"{group} {number}", history_size=100)
                seen[group] = messages(ws, 3)
        for group in groups:
            for number in range(3, 6):
                publish(cluster.url, group, f"{group} {number}", history_size=100)
            ws, joined = feed(server, group, since=seen[group][0]["position"])
            with ws:
                assert joined["recovered"] is True and joined["missed"] == 5
                assert [m["data"] for m in messages(ws, 5)] == [f"{group} {n}" for n in range(1, 6)]
    finally:
        cluster.stop()
