"""A real redis-server (Debian's package) for the hub tests, on a free loopback port, restartable."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from tests.constants import TIMEOUT
from tests.nginx import free_port

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """redis-server with no persistence; :meth:`start` returns once it says it accepts connections."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None
        self.start()

    @property
    def url(self) -> str:
        """The redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port) and wait for its 'Ready to accept connections' line."""
        self.process = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                *self.extra,
            ],
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


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (10,000 higher, so at most 55535) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A Redis Cluster of three masters on loopback ports, made with ``redis-cli --cluster create``."""

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="wsgi-ws-cluster-")
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"{self.folder.name}/nodes-{index}.conf",
                "--dir",
                self.folder.name,
                port=cluster_port(),
            )
            for index in range(3)
        ]
        try:
            self._create()
        except BaseException:
            self.stop()
            raise

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )
        deadline = time.monotonic() + 3 * TIMEOUT
        while not all("cluster_state:ok" in self.cli(node, "CLUSTER", "INFO") for node in self.nodes):
            assert time.monotonic() < deadline, "the cluster did not become ready"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        """The redis:// URL of the first master (any node would do)."""
        return self.nodes[0].url

    def cli(self, node: RedisServer, *command: str) -> str:
        """One command to one node, by redis-cli; its output."""
        done = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(node.port), *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        return done.stdout

    def stop(self) -> None:
        """Stop every node and remove their folder."""
        for node in self.nodes:
            node.stop()
        self.folder.cleanup()
