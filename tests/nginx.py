"""Run Debian's nginx with the project's deploy/nginx.conf in front of a test gunicorn, on loopback ports only."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.constants import TIMEOUT
from tests.server import ROOT
from tests.waiting import wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = ROOT / "deploy" / "nginx.conf"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_http(port: int) -> bool:
    """True once the server on ``port`` answers an HTTP request (any status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as probe:
            probe.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return probe.recv(5) == b"HTTP/"
    except OSError:
        return False


class NginxProxy:
    """nginx proxying to ``upstream_port``, started with the repo's site file (ports and timeouts substituted).

    It starts once the upstream answers: a gunicorn started a moment ago takes connections into its listener's backlog
    at once but answers only when its worker has booted (about a second, longer on a busy machine), and nginx would
    answer the first request 504 after its read timeout, which these tests shorten to 2 s.
    """

    def __init__(self, upstream_port: int, read_timeout: str | None = None) -> None:
        wait_until(lambda: answers_http(upstream_port), f"the upstream on port {upstream_port} never answered HTTP", 3 * TIMEOUT)
        self.folder = Path(tempfile.mkdtemp(prefix="wsgi-ws-nginx-"))
        self.port = free_port()
        site = SITE.read_text()
        site = site.replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{upstream_port};")
        site = re.sub(r"listen 80;", f"listen 127.0.0.1:{self.port};", site)
        if read_timeout is not None:
            site = re.sub(r"proxy_read_timeout \S+;", f"proxy_read_timeout {read_timeout};", site)
        (self.folder / "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"  {kind}_temp_path {self.folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.folder / "nginx.conf").write_text(
            f"{user}worker_processes 1;\nerror_log {self.folder}/error.log info;\npid {self.folder}/nginx.pid;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n  access_log {self.folder}/access.log;\n{temp}\n  include {self.folder}/site.conf;\n}}\n"
        )
        # With daemon on, the command returns once the configuration is loaded and the port is listening.
        subprocess.run(
            [NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")], check=True, timeout=TIMEOUT, capture_output=True
        )

    @property
    def url(self) -> str:
        """The ws:// base URL through the proxy."""
        return f"ws://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        """nginx's error log so far."""
        return (self.folder / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop nginx (fast shutdown), wait until its master has exited, and remove its folder."""
        pid_file = self.folder / "nginx.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not process_exists(pid), f"nginx (pid {pid}) still running after SIGTERM", 3 * TIMEOUT)
        shutil.rmtree(self.folder, ignore_errors=True)


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (nginx daemonizes: it is not our child, so it leaves no zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
