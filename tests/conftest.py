"""Fixtures: real gunicorn servers for the end-to-end tier."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

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
