"""Authentication end to end (tests/apps/auth.py) under our gevent worker, gthread and `flask run`: session cookies
and Flask-Login refusing before accept, bearer tokens from a header, the query string or a subprotocol (never echoed,
never in the access log), connections closed when their token expires, and a revoked user's sockets on two machines."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerFactory
from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisServer
from tests.server import GunicornServer
from tests.test_servers import SERVER_KINDS, FlaskRun, start_kind
from tests.waiting import wait_until
from tests.wsclient import RawClient, upgrade_request

AUTH = "tests.apps.auth:app"


@dataclass
class Served:
    """A server of the auth app, and how to read its request log (gunicorn's access log, Werkzeug's request log)."""

    kind: str
    server: GunicornServer | FlaskRun
    log: Callable[[], str]


@pytest.fixture(scope="module", params=SERVER_KINDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The auth app under each server of tests/test_servers.py; under ``flask run`` Werkzeug's log goes to a file."""
    log_path = tmp_path_factory.mktemp("auth") / "werkzeug.log"
    running = start_kind(request.param, AUTH, {"AUTH_APP_WERKZEUG_LOG": str(log_path)})
    if isinstance(running, FlaskRun):
        yield Served(request.param, running, lambda: log_path.read_text() if log_path.exists() else "")
    else:
        yield Served(request.param, running, running.log)
    running.stop()


def login(server: GunicornServer | FlaskRun, user: str) -> str:
    """Log in; the ``Cookie`` header value that carries the session."""
    data = urllib.parse.urlencode({"user": user}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{server.http_url}/login", data=data), timeout=TIMEOUT) as response:
        assert response.status == 204
        return "; ".join(value.split(";", 1)[0] for value in response.headers.get_all("Set-Cookie"))


def issue_token(server: GunicornServer | FlaskRun, cookie: str, ttl: float) -> tuple[str, float]:
    """A signed token for the logged-in user, expiring in ``ttl`` seconds: (token, exp)."""
    data = urllib.parse.urlencode({"ttl": ttl}).encode()
    issued = urllib.request.Request(f"{server.http_url}/token", data=data, headers={"Cookie": cookie})
    with urllib.request.urlopen(issued, timeout=TIMEOUT) as response:
        body = json.load(response)
        return str(body["token"]), float(body["exp"])


def status_of(server: GunicornServer | FlaskRun, path: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status an upgrade request to ``path`` gets."""
    with RawClient(server.port) as client:
        client.send(upgrade_request(path, headers=headers))
        return client.read_response().status


def open_ws(server: GunicornServer | FlaskRun, path: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect (the caller closes); the connection and its hello."""
    ws = connect(f"{server.url}{path}", open_timeout=TIMEOUT, **kwargs).__enter__()
    return ws, json.loads(ws.recv(timeout=TIMEOUT))


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_session_cookie_and_flask_login_refuse_with_http_before_accept_and_accept_the_user(served: Served) -> None:
    server = served.server
    for path in ("/ws/session", "/ws/login", "/ws/admin"):
        assert status_of(server, path) == 401, f"{path} without a session"
    alice = login(server, "alice")
    assert status_of(server, "/ws/admin", {"Cookie": alice}) == 403, "logged in, not an admin"
    for path, via in (("/ws/session", "session"), ("/ws/login", "flask-login")):
        ws, hello = open_ws(server, path, additional_headers={"Cookie": alice})
        with ws:
            assert (hello["user"], hello["via"]) == ("alice", via)
            ws.send("echo")
            assert ws.recv(timeout=TIMEOUT) == "echo"
    ws, hello = open_ws(server, "/ws/admin", additional_headers={"Cookie": login(server, "root")})
    with ws:
        assert (hello["user"], hello["admin"]) == ("root", True)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_bearer_token_from_the_header_the_query_or_the_subprotocol_and_the_subprotocol_answered_is_never_the_token(
    served: Served,
) -> None:
    server = served.server
    token, _ = issue_token(server, login(server, "alice"), ttl=60)
    ws, hello = open_ws(server, "/ws/token", additional_headers={"Authorization": f"Bearer {token}"})
    with ws:
        assert (hello["user"], hello["via"], hello["subprotocol"]) == ("alice", "header", None)
    ws, hello = open_ws(server, f"/ws/token?access_token={token}")
    with ws:
        assert (hello["user"], hello["via"], hello["args_see_the_token"]) == ("alice", "query", True)
    ws, hello = open_ws(server, "/ws/token", subprotocols=["wsgi-ws", f"bearer.{token}"])
    with ws:
        assert (hello["user"], hello["via"]) == ("alice", "subprotocol")
        assert ws.subprotocol == hello["subprotocol"] == "wsgi-ws"
        assert ws.response is not None and token not in str(ws.response.headers)
    with RawClient(server.port) as client:  # only the token offered: the answer names no subprotocol at all
        response = client.handshake("/ws/token", headers={"Sec-WebSocket-Protocol": f"bearer.{token}"})
        assert "sec-websocket-protocol" not in response.headers and token not in str(response.headers)
    for refused in ("/ws/token", "/ws/token?access_token=forged", "/ws/token?access_token="):
        assert status_of(server, refused) == 401, refused
    assert status_of(server, "/ws/token", {"Sec-WebSocket-Protocol": "wsgi-ws, bearer.forged"}) == 401


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_the_access_log_shows_the_query_of_an_upgrade_redacted_and_the_app_saw_it_whole(served: Served) -> None:
    server = served.server
    mark = f"m{uuid.uuid4().hex[:8]}"  # names are logged, values are not: each request's line has its own name
    token, _ = issue_token(server, login(server, "alice"), ttl=60)
    ws, hello = open_ws(server, f"/ws/token?access_token={token}&{mark}accepted=lobby")
    with ws:
        assert hello["args_see_the_token"] is True, "the app saw the real query"
    forged = "forged-" + token[-20:]
    assert status_of(server, f"/ws/token?access_token={forged}&{mark}forged=1") == 401
    assert status_of(server, f"/ws/token?SECRET-ALONE&{mark}bare=1") == 401
    expected = [f"/ws/token?access_token=[redacted]&{mark}forged=[redacted]", f"/ws/token?[redacted]&{mark}bare=[redacted]"]
    if served.kind != "flask-run":  # Werkzeug logs no line for a connection it handed over, only the refused ones
        expected.append(f"/ws/token?access_token=[redacted]&{mark}accepted=[redacted]")
    for line in expected:
        wait_until(lambda line=line: line in served.log(), f"logged: {line}")  # type: ignore[misc]
    log = served.log()
    assert token not in log and forged not in log and "SECRET-ALONE" not in log and "lobby" not in log, log
    lines = [line for line in log.splitlines() if "/ws/token?" in line]
    assert all("[redacted]" in line for line in lines), lines


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_connection_is_closed_with_1008_when_its_token_expires_and_a_refreshed_token_replaces_the_deadline(
    served: Served,
) -> None:
    server = served.server
    cookie = login(server, "alice")
    long_token, _ = issue_token(server, cookie, ttl=60)
    short_token, short_exp = issue_token(server, cookie, ttl=1.0)
    ws, hello = open_ws(server, "/ws/token", additional_headers={"Authorization": f"Bearer {long_token}"})
    with ws:
        assert hello["user"] == "alice"
        ws.send(f"refresh {short_token}")  # the 60 s deadline is replaced by one a second away
        assert ws.recv(timeout=TIMEOUT) == "refreshed"
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=TIMEOUT)
        closed_at = time.time()
    assert ws.close_code == 1008 and ws.close_reason == "authentication expired"
    assert closed_at >= short_exp - 0.01, f"closed {short_exp - closed_at:.3f} s before the token expired"
    assert closed_at < short_exp + TIMEOUT
    print(f"{served.kind}: closed {closed_at - short_exp:.3f} s after the token's exp")


@pytest.mark.e2e
@pytest.mark.timeout(90)
@pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it")
def test_revoking_a_user_closes_all_of_their_sockets_on_two_machines_with_1008(
    start_server: ServerFactory, redis_server: RedisServer
) -> None:
    machines = [start_server(AUTH, WS_HUB_URL=redis_server.url, WS_CLOSE_TIMEOUT="2") for _ in range(2)]
    with ExitStack() as stack:
        alice = login(machines[0], "alice")  # one cookie, valid on both machines (the same secret key)
        token, _ = issue_token(machines[1], alice, ttl=60)
        sockets = [
            open_ws(machines[0], "/ws/login", additional_headers={"Cookie": alice}),
            open_ws(machines[1], "/ws/session", additional_headers={"Cookie": alice}),
            open_ws(machines[1], "/ws/token", subprotocols=["wsgi-ws", f"bearer.{token}"]),
        ]
        bob_ws, _ = open_ws(machines[0], "/ws/login", additional_headers={"Cookie": login(machines[0], "bob")})
        for ws, _ in [*sockets, (bob_ws, None)]:
            stack.enter_context(ws)
        assert len({hello["pid"] for _, hello in sockets}) == 2, "alice is on both machines"
        revoke = urllib.request.Request(
            f"{machines[1].http_url}/revoke/alice", method="POST", headers={"Cookie": login(machines[1], "root")}
        )
        with urllib.request.urlopen(revoke, timeout=TIMEOUT) as response:
            assert json.load(response) == {"workers": 2}
        for ws, _ in sockets:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
            assert (ws.close_code, ws.close_reason) == (1008, "access revoked")
        bob_ws.send("still here")
        assert bob_ws.recv(timeout=TIMEOUT) == "still here", "another user's socket is untouched"
        refused = urllib.request.Request(f"{machines[0].http_url}/revoke/bob", method="POST", headers={"Cookie": alice})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(refused, timeout=TIMEOUT)
        assert caught.value.code == 403
        caught.value.close()


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_a_browser_sends_its_token_as_a_subprotocol_and_gets_the_real_one_back(start_server: ServerFactory) -> None:
    from tests.chromium import WAIT_MS, launch, require_chromium

    require_chromium()
    server = start_server(AUTH)
    token, _ = issue_token(server, login(server, "alice"), ttl=60)
    with launch() as browser:
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{server.http_url}/page")  # the server's own origin: allowed by the same-origin default
        seen = page.evaluate(
            """token => new Promise((resolve, reject) => {
                const ws = new WebSocket(`ws://${location.host}/ws/token`, ["wsgi-ws", "bearer." + token]);
                ws.onmessage = event => { resolve({protocol: ws.protocol, hello: JSON.parse(event.data)}); ws.close(); };
                ws.onclose = event => reject(new Error(`closed ${event.code} before a hello`));
            })""",
            token,
        )
    assert seen["protocol"] == "wsgi-ws"
    assert (seen["hello"]["user"], seen["hello"]["via"], seen["hello"]["subprotocol"]) == ("alice", "subprotocol", "wsgi-ws")
    wait_until(lambda: '/ws/token HTTP/1.1" 101' in server.log(), "the upgrade was logged")
    assert token not in server.log()
