"""Presence end to end: who is in a group across two gunicorn masters sharing one Redis; a SIGKILLed worker's
entries vanish within twice the heartbeat and watchers hear of it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisServer
from tests.server import GunicornServer
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it"),
]

ROUTES = "tests.apps.routes:app"
HEARTBEAT = 0.5


def present(
    stack: ExitStack, server: GunicornServer, group: str, user: str, watch: bool = False
) -> tuple[ClientConnection, dict[str, Any]]:
    query = f"?user={user}" + ("&watch=1" if watch else "")
    ws = stack.enter_context(connect(f"{server.url}/presence/{group}{query}", open_timeout=TIMEOUT))
    hello: dict[str, Any] = json.loads(ws.recv(timeout=TIMEOUT))
    return ws, hello


def entries(server: GunicornServer, group: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.http_url}/presence-list/{group}", timeout=TIMEOUT) as response:
        found: list[dict[str, Any]] = json.load(response)["entries"]
        return found


def test_presence_spans_machines_and_a_killed_workers_entries_vanish_within_twice_the_heartbeat(
    start_server: ServerFactory, redis_server: RedisServer
) -> None:
    env = {"WS_HUB_URL": redis_server.url, "WS_HUB_PRESENCE_HEARTBEAT": str(HEARTBEAT)}
    first, second = start_server(ROUTES, **env), start_server(ROUTES, **env)
    with ExitStack() as stack:
        watcher, _ = present(stack, first, "room", "watcher", watch=True)
        (joined_self,) = [json.loads(watcher.recv(timeout=TIMEOUT))]
        assert joined_self["kind"] == "join" and joined_self["user"] == "watcher"
        victim_stack = ExitStack()
        _, victim = present(victim_stack, second, "room", "ann")
        present(victim_stack, second, "room", "bob")
        seen = [json.loads(watcher.recv(timeout=TIMEOUT)) for _ in range(2)]
        assert sorted((e["kind"], e["user"]) for e in seen) == [("join", "ann"), ("join", "bob")]
        listed = entries(first, "room")
        assert [e["user"] for e in listed] == ["watcher", "ann", "bob"], "oldest first, from both machines"
        assert {e["worker"] for e in listed} == {joined_self["worker"], victim["worker"]}
        os.kill(victim["pid"], signal.SIGKILL)  # no clean exit: nobody removes its entries
        killed_at = time.monotonic()
        gone = wait_until(lambda: [e["user"] for e in entries(first, "room")] == ["watcher"], "the dead worker's entries went")
        left = [json.loads(watcher.recv(timeout=TIMEOUT)) for _ in range(2)]
        heard = time.monotonic() - killed_at
        assert sorted((e["kind"], e["user"]) for e in left) == [("leave", "ann"), ("leave", "bob")], "each leave once"
        print(f"presence: entries gone {gone:.2f} s, leaves heard {heard:.2f} s after SIGKILL (heartbeat {HEARTBEAT} s)")
        assert gone < 2 * HEARTBEAT + 1.0, f"{gone:.2f} s: more than twice the heartbeat (plus a second of slack for the poll)"
        victim_stack.close()


def test_leaving_takes_the_entry_and_tells_watchers(start_server: ServerFactory, redis_server: RedisServer) -> None:
    server = start_server(ROUTES, WS_HUB_URL=redis_server.url, WSGI_WS_WORKERS="2")
    with ExitStack() as stack:
        watcher, _ = present(stack, server, "lobby", "w", watch=True)
        assert json.loads(watcher.recv(timeout=TIMEOUT))["kind"] == "join"
        with ExitStack() as inner:
            present(inner, server, "lobby", "carol")
            assert json.loads(watcher.recv(timeout=TIMEOUT))["user"] == "carol"
        event = json.loads(watcher.recv(timeout=TIMEOUT))
        assert (event["kind"], event["user"]) == ("leave", "carol")
        assert [e["user"] for e in entries(server, "lobby")] == ["w"]
