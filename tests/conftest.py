"""Fixtures: real gunicorn servers for the end-to-end tier."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

from tests.hubkit import Setup
from tests.redis_server import RedisServer
from tests.server import GunicornServer

ServerFactory = Callable[..., GunicornServer]


@pytest.fixture(scope="session")
def echo_server() -> Iterator[GunicornServer]:
    """The sample app (app.py) under the project's gunicorn.conf.py, shared by the tests that only talk to it."""
    server = GunicornServer("app:app")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def test_app_server() -> Iterator[GunicornServer]:
    """The test routes of tests/apps/routes.py, with a 2 s close timeout so close tests stay short."""
    server = GunicornServer("tests.apps.routes:app", env={"WS_CLOSE_TIMEOUT": "2", "WS_SUBPROTOCOLS": "chat.v2,chat.v1"})
    yield server
    server.stop()


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start servers with their own settings for one test; all are stopped afterwards."""
    started: list[GunicornServer] = []

    def start(app: str = "app:app", **env: str) -> GunicornServer:
        server = GunicornServer(app, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for the module's tests (tests/chromium.py; the module called require_chromium())."""
    from tests.chromium import launch

    with launch() as made:
        yield made


@pytest.fixture
def setup() -> Iterator[Setup]:
    """A hub over socketpairs whose passes run when the test says (tests/hubkit.py)."""
    made = Setup()
    yield made
    for sock in made.sockets:
        sock.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port (the test may stop and start it)."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def certificate() -> Iterator[tuple[str, str]]:
    """A self-signed certificate and key for 127.0.0.1, made with the OS's openssl: (cert path, key path)."""
    folder = Path(tempfile.mkdtemp(prefix="wsgi-ws-tls-"))
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield str(cert), str(key)
    shutil.rmtree(folder, ignore_errors=True)


TIERS = ("unit", "socket", "e2e", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier (pytest -m unit, -m socket, -m e2e, -m browser; make test runs all)."""
    for item in items:
        tiers = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid} must have exactly one tier marker of {TIERS}, has {sorted(tiers) or 'none'}")
