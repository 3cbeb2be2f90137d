"""How long one handler test takes through ``wsgi_ws.testing.TestClient`` (goal: under 50 ms), and through serve().

A handler test here is what a user writes: make the client, connect to the sample's ``/ws``, send a message, receive
its echo, close (the end of the block waits for the handler). Measured two ways:

- ``in-process``: that test's body, timed with ``perf_counter`` in one process, ``RUNS`` times;
- ``pytest``: a test module of ``RUNS`` such tests run by pytest (its logging capture on, as for any user), each
  test's time (setup + call + teardown) read from ``--junitxml``;

and, for scale, ``serve()``: a fresh gunicorn per test (``SERVE_RUNS`` times), the end-to-end way.

    python bench/test_client.py [RUNS] [SERVE_RUNS]      # defaults: 200 and 5
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SERVE_RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5

TEST_MODULE = """
import pytest
from app import app
from wsgi_ws.testing import TestClient

@pytest.mark.parametrize("n", range({runs}))
def test_echo(n):
    with TestClient(app) as client, client.connect("/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
"""


def summary(name: str, seconds: list[float]) -> str:
    """One line: mean, median, p95 and max in milliseconds."""
    ordered = sorted(seconds)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    mean, median, top = statistics.mean(ordered) * 1000, statistics.median(ordered) * 1000, ordered[-1] * 1000
    return f"{name:<11} n={len(ordered):<4} mean {mean:7.2f} ms   median {median:7.2f} ms   p95 {p95 * 1000:7.2f} ms   max {top:7.2f} ms"


def in_process() -> list[float]:
    """The test body, ``RUNS`` times in this process (after one warm-up: imports, the app's first request)."""
    from app import app
    from wsgi_ws.testing import TestClient

    logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])  # the lines are made, as under pytest
    times = []
    for n in range(RUNS + 1):
        started = time.perf_counter()
        with TestClient(app) as client, client.connect("/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
        if n:
            times.append(time.perf_counter() - started)
    return times


def under_pytest() -> tuple[list[float], float]:
    """Each test's time as pytest reports it, and the wall time of the whole pytest run."""
    folder = Path(tempfile.mkdtemp(prefix="wsgi-ws-bench-"))
    (folder / "test_fast_client.py").write_text(TEST_MODULE.format(runs=RUNS))
    report = folder / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "--rootdir", str(folder)]
    command.append(str(folder))
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - started
    times = [float(case.get("time", "0")) for case in ET.parse(report).getroot().iter("testcase")]
    return times, wall


def with_serve() -> list[float]:
    """A fresh gunicorn per test: start, connect, echo, close, stop."""
    from wsgi_ws.testing import serve

    times = []
    for _ in range(SERVE_RUNS):
        started = time.perf_counter()
        with serve("app:app", cwd=ROOT, env={"PYTHONPATH": str(ROOT)}) as server, server.connect("/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    """Print the three lines."""
    print(summary("in-process", in_process()))
    times, wall = under_pytest()
    print(summary("pytest", times) + f"   (the whole pytest run: {wall:.1f} s)")
    if SERVE_RUNS:
        print(summary("serve()", with_serve()))


if __name__ == "__main__":
    main()
