"""A real redis-server (Debian's package) for the hub tests, on a free loopback port, restartable."""

from __future__ import annotations

import shutil
import subprocess
import threading

from tests.constants import TIMEOUT
from tests.nginx import free_port

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """redis-server with no persistence; :meth:`start` returns once it says it accepts connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.start()

    @property
    def url(self) -> str:
        """The redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port) and wait for its 'Ready to accept connections' line."""
        self.process = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:  # blocks on the pipe until redis-server writes
            seen.append(line)
            if "Ready to accept connections" in line:
                threading.Thread(target=self.process.stdout.read, daemon=True).start()  # keep the pipe drained
                return
        raise RuntimeError("redis-server did not start: " + "".join(seen[-5:]))

    def stop(self) -> None:
        """Stop it and wait for the exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=TIMEOUT)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
