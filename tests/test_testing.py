"""wsgi_ws.testing, as a user of the library would use it: without the project's gunicorn.conf.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.constants import TIMEOUT
from wsgi_ws.testing import TestClient, TestServer, serve
from wsgi_ws.testing.live import ServerLog

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def test_serve_runs_an_app_with_the_websocket_worker_and_connects() -> None:
    with serve("tests.apps.gws_style:app", cwd=ROOT, env={"PYTHONPATH": str(ROOT)}) as server:
        assert isinstance(server, TestServer)
        with server.connect("/anything") as ws:
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
        assert "wsgi_ws.worker.WebSocketWorker" in server.log()
        folder = server.log_path.parent
        assert folder.is_dir()
    assert server.process.returncode is not None
    assert not folder.exists(), "serve() left its log folder behind"
    assert "wsgi_ws.worker.WebSocketWorker" in server.log(), "the log is still there to read after the block"


def test_a_server_log_is_read_while_written_and_keeps_its_text_once_its_folder_is_gone() -> None:
    """The log of serve(), and of the project's own flask run and python -m wsgi_ws serve helpers."""
    log = ServerLog("wsgi-ws-test-", "out.log")
    with log.open() as output:
        subprocess.run([sys.executable, "-c", "print('hello')"], stdout=output, check=True, timeout=TIMEOUT)
    assert log.text() == "hello\n"
    log.close()
    assert not log.path.parent.exists()
    assert log.text() == "hello\n"
    log.close()  # a second close does nothing
    assert log.text() == "hello\n"


def test_serve_passes_options_through_the_environment() -> None:
    env = {"PYTHONPATH": str(ROOT), "WS_ALLOWED_ORIGINS": "https://only.example"}
    with serve("app:app", cwd=ROOT, env=env) as server:
        with pytest.raises(InvalidStatus) as caught:
            server.connect("/ws", origin="https://other.example")
        assert caught.value.response.status_code == 403


def test_wait_for_log_waits_for_a_line_written_after_the_client_is_done_and_times_out_clearly() -> None:
    with serve("app:app", cwd=ROOT, env={"PYTHONPATH": str(ROOT)}) as server:
        with server.connect("/ws") as ws:  # the README's example: the close line comes just after this block
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
        assert "ws.close path=/ws" in server.wait_for_log("ws.close path=/ws")
        with pytest.raises(TimeoutError, match="never written"):
            server.wait_for_log("never written", timeout=0.2)


def _fast() -> AbstractContextManager[Any]:
    from app import app

    return TestClient(app)


def _served() -> AbstractContextManager[Any]:
    return serve("app:app", cwd=ROOT, env={"PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("make", [_fast, _served], ids=["TestClient", "serve"])
def test_one_test_body_runs_on_the_fast_client_and_on_a_real_server(make: Callable[[], AbstractContextManager[Any]]) -> None:
    with make() as client:  # the one line that differs
        with client.connect("/ws") as ws:
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"
            ws.send(b"\x01")
            assert ws.recv(timeout=TIMEOUT) == b"\x01"
        with pytest.raises(InvalidStatus) as caught:
            client.connect("/ws", origin="https://evil.example")
        assert caught.value.response.status_code == 403 and b"is not this server's" in caught.value.response.body
