"""Start a real gunicorn, from the project's own gunicorn.conf.py, on a loopback port the test owns."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.constants import TIMEOUT

ROOT = Path(__file__).resolve().parent.parent


class GunicornServer:
    """A gunicorn process listening on a socket this object bound first, so it is ready to connect at once.

    The listening socket is handed over as ``fd://N``: connections made before the worker is up wait in the
    kernel's backlog, so no test ever polls or sleeps for start-up.
    """

    def __init__(self, app: str = "app:app", env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.port: int = self.listener.getsockname()[1]
        self.log_path = Path(tempfile.mkdtemp(prefix="wsgi-ws-test-")) / "gunicorn.log"
        fd = self.listener.fileno()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_"))}
        environment.update({"WSGI_WS_BIND": f"fd://{fd}", "PYTHONPATH": str(ROOT), "WSGI_WS_ACCESS_LOG": "-"})
        self.env = dict(env or {})
        environment.update(self.env)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), *args, app],
                cwd=ROOT,
                env=environment,
                pass_fds=(fd,),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    @property
    def tls(self) -> bool:
        """True when the server was started with a certificate (wss:// and https://)."""
        return "WSGI_WS_CERTFILE" in self.env

    @property
    def url(self) -> str:
        """The ws:// (or wss://) base URL."""
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The http:// (or https://) base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, wait for the exit, and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=3 * TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.listener.close()
        return self.process.returncode
