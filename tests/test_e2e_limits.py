"""Safe defaults end to end (issue 16) on our gevent worker, gunicorn's gthread worker and `flask run`.

Same origin by default: a browser page of the server's own origin connects, any other origin gets 403, a client
without ``Origin`` connects; ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` count only from gunicorn's
``forwarded_allow_ips``. Per-IP limits: open connections (``max_connections_per_ip``) and new ones per second
(``max_connection_rate_per_ip``), the server's and a route's own, answered 429 with ``Retry-After`` before any 101.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.server import GunicornServer
from tests.test_servers import FlaskRun, start_kind
from tests.waiting import wait_until
from tests.wsclient import RawClient, Response, upgrade_request

pytestmark = pytest.mark.e2e

APP = "tests.apps.limits:app"
KINDS = ("gevent-worker", "gthread", "flask-run")
CONFIGS = {
    "default": {},
    "capped": {"WS_MAX_CONNECTIONS_PER_IP": "2"},
    "rate": {"WS_MAX_CONNECTION_RATE_PER_IP": "3"},
}
Server = GunicornServer | FlaskRun
GetServer = Callable[[str], Server]


def start(kind: str, env: dict[str, str], args: tuple[str, ...] = ()) -> Server:
    """A server of this kind for tests.apps.limits, with these WS_* settings."""
    return start_kind(kind, APP, env, args)


@pytest.fixture(scope="module", params=KINDS)
def server_of(request: pytest.FixtureRequest) -> Iterator[GetServer]:
    """``server_of(config)``: this kind's server with one of CONFIGS, started once for the module."""
    started: dict[str, Server] = {}

    def get(config: str) -> Server:
        if config not in started:
            started[config] = start(request.param, CONFIGS[config])
        return started[config]

    get.kind = request.param  # type: ignore[attr-defined]
    yield get
    for server in started.values():
        server.stop()


def attempt(server: Server, path: str = "/hold", headers: dict[str, str] | None = None) -> tuple[Response, RawClient]:
    """Send an upgrade request; the response and the open client (the caller closes it)."""
    client = RawClient(server.port)
    client.send(upgrade_request(path, host=f"127.0.0.1:{server.port}", headers=headers))
    return client.read_response(), client


def status_of(server: Server, path: str = "/hold", headers: dict[str, str] | None = None) -> int:
    response, client = attempt(server, path, headers)
    client.close()
    return response.status


def stats(server: Server) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stats", timeout=10) as answer:
        result: dict[str, int] = json.load(answer)
        return result


# Same origin by default.


@pytest.mark.timeout(60)
def test_the_servers_own_origin_connects_and_others_get_403(server_of: GetServer) -> None:
    server = server_of("default")
    assert status_of(server, headers={"Origin": f"http://127.0.0.1:{server.port}"}) == 101
    assert status_of(server) == 101  # no Origin: not a browser
    response, client = attempt(server, headers={"Origin": "https://evil.example"})
    client.close()
    assert response.status == 403
    assert b"'https://evil.example' is not this server's" in response.body
    assert status_of(server, headers={"Origin": f"http://localhost:{server.port}"}) == 403  # another host name
    assert status_of(server, headers={"Origin": f"https://127.0.0.1:{server.port}"}) == 403  # another scheme


@pytest.mark.timeout(60)
def test_forwarded_headers_count_only_from_trusted_proxies(server_of: GetServer) -> None:
    server = server_of("default")
    behind_tls_proxy = {"Origin": "https://app.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example"}
    # gunicorn trusts 127.0.0.1 (forwarded_allow_ips' default); `flask run` trusts nobody (use Werkzeug's ProxyFix).
    expected = 403 if server_of.kind == "flask-run" else 101  # type: ignore[attr-defined]
    assert status_of(server, headers=behind_tls_proxy) == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["gevent-worker", "gthread"])
def test_forwarded_headers_from_an_untrusted_peer_are_ignored(kind: str) -> None:
    server = start(kind, {}, ("--forwarded-allow-ips", "10.9.9.9"))
    try:
        headers = {"Origin": "https://app.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example"}
        assert status_of(server, headers=headers) == 403
        assert status_of(server, headers={"Origin": f"http://127.0.0.1:{server.port}"}) == 101
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_every_origin_must_be_asked_for_and_is_warned_about(server_of: GetServer) -> None:
    server = start(server_of.kind, {"WS_ALLOWED_ORIGINS": "*"})  # type: ignore[attr-defined]
    try:
        assert status_of(server, headers={"Origin": "https://evil.example"}) == 101
        wait_until(lambda: "allows WebSocket connections from every origin" in server.log(), "the start-up warning")
        assert "allows WebSocket connections from every origin" not in server_of("default").log()
    finally:
        server.stop()


# Per-IP limits.


@pytest.mark.timeout(60)
def test_open_connections_per_ip_are_capped_with_429_and_retry_after(server_of: GetServer) -> None:
    server = server_of("capped")
    first, one = attempt(server)
    second, two = attempt(server)
    assert (first.status, second.status) == (101, 101)
    third, three = attempt(server)
    three.close()
    assert third.status == 429 and third.headers["retry-after"] == "5"
    assert b"2 connections open from 127.0.0.1 (max_connections_per_ip=2)" in third.body
    one.close()  # its handler returns, its slot is free again
    wait_until(lambda: status_of(server) == 101, "a connection admitted once one of the two ended")
    two.close()


@pytest.mark.timeout(60)
def test_a_routes_own_cap_counts_that_route_alone(server_of: GetServer) -> None:
    server = server_of("default")
    response, held = attempt(server, "/route/capped")
    assert response.status == 101
    assert status_of(server, "/route/capped") == 429
    assert status_of(server, "/hold") == 101  # the server sets no cap: other routes are not counted
    held.close()
    wait_until(lambda: status_of(server, "/route/capped") == 101, "the route's slot freed")


@pytest.mark.timeout(60)
def test_new_connections_per_ip_per_second_are_limited(server_of: GetServer) -> None:
    server = server_of("rate")
    before = stats(server)["limited"]
    assert [status_of(server) for _ in range(3)] == [101, 101, 101]  # a burst of one second's worth
    response, client = attempt(server)
    client.close()
    assert response.status == 429 and response.headers["retry-after"] == "1"
    assert b"over 3 new connections per second from 127.0.0.1" in response.body
    assert stats(server)["limited"] == before + 1
    wait_until(lambda: status_of(server) == 101, "a token back within a second", timeout=5)


@pytest.mark.timeout(60)
def test_a_routes_own_rate(server_of: GetServer) -> None:
    server = server_of("default")
    wait_until(lambda: status_of(server, "/route/slow") == 101, "the route's first connection")
    assert status_of(server, "/route/slow") == 429
    assert status_of(server, "/hold") == 101


@pytest.mark.timeout(60)
def test_refusals_are_logged_once_per_ip_per_interval() -> None:
    server = start("gevent-worker", {"WS_MAX_CONNECTION_RATE_PER_IP": "1"})
    try:
        statuses = [status_of(server) for _ in range(20)]
        assert statuses[0] == 101 and statuses.count(429) >= 18
        refused = statuses.count(429)
        assert stats(server)["limited"] == refused
        lines = [line for line in server.log().splitlines() if "status=429" in line]
        assert len(lines) == 1, lines  # the first of the interval; the others are counted for the next line
        assert "over 1 new connections per second from 127.0.0.1" in lines[0]
    finally:
        server.stop()
