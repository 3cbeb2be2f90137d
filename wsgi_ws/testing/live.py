"""End-to-end tests of your own WebSocket handlers: serve the app in gunicorn on a free loopback port, connect to it.

::

    from wsgi_ws.testing import serve

    def test_echo():
        with serve("myapp:app") as server, server.connect("/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"

:func:`serve` starts gunicorn with wsgi-ws's gevent worker (and your ``gunicorn.conf.py`` if you name it) on a
socket bound before gunicorn starts, so a client can connect at once: nothing waits or polls for start-up. The
client is the ``websockets`` package's blocking client. A pytest fixture is one line::

    @pytest.fixture
    def server():
        with serve("myapp:app", env={"WS_CLOSE_TIMEOUT": "1"}) as running:
            yield running
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from websockets.sync.client import ClientConnection, connect

__all__ = ["ServerLog", "TestServer", "serve"]

#: Seconds stop() waits for gunicorn to exit before killing it.
STOP_TIMEOUT = 30.0


class ServerLog:
    """What a server process prints, in a file in a temporary folder of its own.

    Pass :meth:`open` to the process as its output; :meth:`text` reads what it has written so far. :meth:`close`, once
    the process has exited, keeps the text and removes the folder: :meth:`text` then still returns all of it, and a
    second :meth:`close` does nothing."""

    def __init__(self, prefix: str, name: str) -> None:
        #: The file (in a folder made with ``tempfile.mkdtemp(prefix=prefix)``); gone after :meth:`close`.
        self.path = Path(tempfile.mkdtemp(prefix=prefix)) / name
        self._final: str | None = None

    def open(self) -> BinaryIO:
        """The file, opened for the process to write to (close it once the process has it)."""
        return self.path.open("wb")

    def text(self) -> str:
        """Everything written so far; after :meth:`close`, all of it."""
        if self._final is not None:
            return self._final
        return self.path.read_text(errors="replace")

    def close(self) -> None:
        """Keep the text and remove the folder (call it once the process has exited)."""
        if self._final is None:
            self._final = self.text()
            shutil.rmtree(self.path.parent, ignore_errors=True)


class TestServer:
    """A gunicorn process serving a WSGI app on a loopback socket that was listening before gunicorn started."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: str,
        *,
        config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        #: The loopback port.
        self.port: int = self.listener.getsockname()[1]
        #: The environment overrides it was started with.
        self.env = dict(env or {})
        self._log = ServerLog("wsgi-ws-test-", "gunicorn.log")
        #: Where the server's output goes; the file and its folder are removed by :meth:`stop`.
        self.log_path = self._log.path
        fd = self.listener.fileno()
        command = [sys.executable, "-m", "gunicorn"]
        if config is not None:
            command += ["-c", str(config)]
        command += ["--bind", f"fd://{fd}", "--no-control-socket", "--access-logfile", "-"]
        if config is None:
            command += ["--worker-class", "wsgi_ws.worker.WebSocketWorker"]
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_"))}
        environment["WSGI_WS_BIND"] = f"fd://{fd}"  # for a gunicorn.conf.py that reads it, as the project's does
        environment.update(self.env)
        with self._log.open() as log_file:
            self.process = subprocess.Popen(
                [*command, *args, app],
                cwd=cwd,
                env=environment,
                pass_fds=(fd,),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    @property
    def tls(self) -> bool:
        """True when started with a certificate (``WSGI_WS_CERTFILE``): wss:// and https://."""
        return "WSGI_WS_CERTFILE" in self.env

    @property
    def url(self) -> str:
        """The ws:// (or wss://) base URL."""
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The http:// (or https://) base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def connect(self, path: str = "/", **kwargs: Any) -> ClientConnection:
        """A connected blocking client (``websockets.sync.client``); use it in a ``with`` block."""
        kwargs.setdefault("open_timeout", 10)
        client: ClientConnection = connect(f"{self.url}{path}", **kwargs)
        return client

    def log(self) -> str:
        """Everything the server printed so far (gunicorn's and wsgi-ws's log lines); after :meth:`stop`, all of it."""
        return self._log.text()

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until the log contains ``text`` (a line the server writes after the client's side is done, such as
        ``ws.close path=/shout``, may come a few milliseconds later); the log then. ``TimeoutError`` after ``timeout``
        seconds, with the log's end in the message."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the server's log within {timeout} s; it ends:\n{log[-2000:]}")
            if self.process.poll() is not None and text not in self.log():
                raise TimeoutError(f"the server exited ({self.process.returncode}) without logging {text!r}:\n{log[-2000:]}")
            time.sleep(0.01)
        return log

    def stop(self) -> int:
        """SIGTERM, wait for the exit (killing after ``STOP_TIMEOUT``), return the exit code.

        The log's temporary folder is removed; :meth:`log` still returns what the server wrote.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.listener.close()
        self._log.close()
        return self.process.returncode


@contextmanager
def serve(
    app: str,
    *,
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[TestServer]:
    """Serve ``app`` ("module:variable") in gunicorn with the WebSocket worker for the duration of the block."""
    server = TestServer(app, config=config, env=env, args=args, cwd=cwd)
    try:
        yield server
    finally:
        server.stop()
