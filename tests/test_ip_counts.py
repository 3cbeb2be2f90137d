"""max_connections_per_ip across machines: two gunicorn masters sharing one real Redis hold one count per IP."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.redis_server import RedisServer
from tests.server import GunicornServer
from tests.test_e2e_limits import attempt, status_of
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

APP = "tests.apps.limits:app"


@pytest.mark.timeout(90)
def test_the_cap_is_exact_across_two_servers_and_a_dead_ones_share_comes_back(redis_server: RedisServer, tmp_path: Path) -> None:
    env = {"WS_HUB_URL": redis_server.url, "WS_MAX_CONNECTIONS_PER_IP": "3", "WS_HUB_PRESENCE_HEARTBEAT": "1"}
    # The second is SIGKILLed, master and all, so nothing removes its metrics folder: it is made in the test's own.
    first, second = GunicornServer(APP, env=env), GunicornServer(APP, env={**env, "TMPDIR": str(tmp_path)})
    clients = []
    try:
        for server in (first, first, second):
            response, client = attempt(server)
            assert response.status == 101
            clients.append(client)
        assert [status_of(first), status_of(second), status_of(second)] == [429, 429, 429]  # 3 open in all
        clients.pop(0).close()  # one on the first server ends: one slot, on either server
        wait_until(lambda: status_of(second) == 101, "the freed slot taken from the other server")
        # The second server dies without a word: its connection's count goes with its alive key (1.5 heartbeats).
        response, client = attempt(second)
        assert response.status == 101
        clients.append(client)
        assert status_of(first) == 429
        workers = Path(f"/proc/{second.process.pid}/task/{second.process.pid}/children").read_text().split()
        for pid in [*workers, str(second.process.pid)]:  # the worker first: it must not go away cleanly
            os.kill(int(pid), signal.SIGKILL)
        second.process.wait(timeout=10)
        wait_until(lambda: status_of(first) == 101, "the dead server's share released", timeout=15)
    finally:
        for client in clients:
            client.close()
        first.stop()
        second.stop()
