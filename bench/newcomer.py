"""A newcomer's first minute, timed: a fresh clone of this checkout, `make run`, then the first echo through /ws.

    python bench/newcomer.py            # clones HEAD's repository into a temporary folder

It prints the seconds from `git clone` to the first echoed message (the goal is under 30 s). pip's cache is the
machine's own: a first run on a machine that never installed the requirements also downloads them.
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
from pathlib import Path

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="wsgi-ws-newcomer-"))
    port = free_port()
    started = time.monotonic()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder / "wsgi-ws")], check=True)
    checkout = folder / "wsgi-ws"
    env = {**os.environ, "WSGI_WS_BIND": f"127.0.0.1:{port}"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    server = subprocess.Popen(["make", "run"], cwd=checkout, env=env, start_new_session=True, **quiet)
    try:
        deadline = started + 300
        while True:
            try:
                with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=1) as ws:
                    ws.send("hello")
                    assert ws.recv(timeout=5) == "hello"
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(f"make run ended ({server.returncode}) or never served", file=sys.stderr)
                    return 1
                time.sleep(0.05)
        print(f"fresh clone to first echo: {time.monotonic() - started:.1f} s (goal: under 30 s)")
        return 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
