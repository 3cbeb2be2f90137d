"""Prometheus metrics: the exporter adds what was counted since its last export, and a scrape of any worker of a
two-worker server reports the whole server (prometheus_client's multiprocess mode, dead workers marked)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.constants import TIMEOUT
from tests.redis_server import REDIS, RedisServer
from tests.server import ROOT, GunicornServer
from tests.test_metrics import Counted, fresh_route
from tests.waiting import wait_until
from wsgi_ws import metrics
from wsgi_ws.integrations import prometheus
from wsgi_ws.metrics import Buckets


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of a Prometheus text exposition (labels as written)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


@pytest.mark.unit
def test_bucket_counts_added_at_once_expose_as_observe_does() -> None:
    values = [0.0, 3.0, 10.0, 10.5, 99.0, 1000.0, 10.0]
    by_observe, by_buckets = CollectorRegistry(), CollectorRegistry()
    observed = Histogram("h", "h", registry=by_observe, buckets=(10.0, 100.0))
    for value in values:
        observed.observe(value)
    added = Histogram("h", "h", registry=by_buckets, buckets=(10.0, 100.0))
    counted = Buckets((10.0, 100.0))
    prometheus._add_buckets(added, counted, counted.copy())
    for value in values:
        counted.add(value)
    prometheus._add_buckets(added, counted, Buckets((10.0, 100.0)))

    def exposed(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert exposed(by_buckets) == exposed(by_observe)


@pytest.mark.unit
def test_each_export_adds_only_what_was_counted_since_the_last() -> None:
    exporter = prometheus._Exporter()
    metrics.count_message_sizes()
    route = fresh_route()
    first = Counted(route)
    metrics.opened(first)
    first.messages_received, first.bytes_received = 3, 30
    assert first.message_sizes is not None
    first.message_sizes[0].add(100)
    metrics.refused({"PATH_INFO": route}, "origin")
    exporter.export()
    exporter.export()  # nothing new: nothing added
    text = generate_latest(exporter.registry).decode()
    route_samples = {name: value for name, value in samples(text).items() if f'route="{route}"' in name}
    assert route_samples[f'wsgi_ws_connections_open{{route="{route}"}}'] == 1
    assert route_samples[f'wsgi_ws_connections_accepted_total{{route="{route}"}}'] == 1
    assert route_samples[f'wsgi_ws_messages_total{{direction="in",route="{route}"}}'] == 3
    assert route_samples[f'wsgi_ws_connections_refused_total{{reason="origin",route="{route}"}}'] == 1
    assert route_samples[f'wsgi_ws_message_size_bytes_bucket{{direction="in",le="256.0",route="{route}"}}'] == 1
    first.messages_received, first.close_code, first.duration = 5, 1000, 2.0
    metrics.closed(first)
    exporter.export()
    after = samples(generate_latest(exporter.registry).decode())
    assert after[f'wsgi_ws_messages_total{{direction="in",route="{route}"}}'] == 5, "the 2 since the last export, once"
    assert after[f'wsgi_ws_connections_open{{route="{route}"}}'] == 0
    assert after[f'wsgi_ws_connections_closed_total{{code="1000",route="{route}"}}'] == 1
    assert after[f'wsgi_ws_connection_duration_seconds_bucket{{le="10.0",route="{route}"}}'] == 1


def _python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a Python process of its own with the environment ``env`` (prometheus_client chooses its mode
    when first imported); what it printed. Fails on a non-zero exit."""
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=TIMEOUT, check=True)


@pytest.mark.e2e
def test_a_folder_that_cannot_be_written_turns_the_metrics_off_and_serving_goes_on(tmp_path: pathlib.Path) -> None:
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout)\n"
        "from wsgi_ws.integrations import prometheus\n"
        "prometheus.ensure_exporting()\n"
        "print('serving on')\n"
    )
    env = {**os.environ, prometheus.MULTIPROCESS_DIR: str(tmp_path / "removed")}
    done = _python(script, env)
    assert "Prometheus metrics are off in this worker: PROMETHEUS_MULTIPROC_DIR=" in done.stdout and "serving on" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.e2e
def test_a_process_that_only_refuses_exports_its_refusals(tmp_path: pathlib.Path) -> None:
    # Under gthread or flask run nothing else starts the exporter: counting a 429 from the per-IP limits must.
    script = (
        "from wsgi_ws.integrations.admission import Admission\n"
        "from wsgi_ws.options import WebSocketOptions\n"
        "admission, options = Admission(), WebSocketOptions(max_connection_rate_per_ip=1)\n"
        "environ = {'REMOTE_ADDR': '192.0.2.1', 'PATH_INFO': '/only-refused'}\n"
        "assert admission.admit(environ, options) is None\n"
        "assert [admission.admit(environ, options).status for _ in range(2)] == [429, 429]\n"
    )
    env = {**os.environ, prometheus.MULTIPROCESS_DIR: str(tmp_path)}
    _python(script, env)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    exported = samples(generate_latest(registry).decode())
    assert exported.get('wsgi_ws_connections_refused_total{reason="ip_rate",route="/only-refused"}') == 2, exported


@pytest.mark.unit
def test_without_a_multiprocess_folder_stats_are_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(prometheus.MULTIPROCESS_DIR, raising=False)
    metrics.refused({"PATH_INFO": fresh_route()}, "handshake")
    assert prometheus.server_totals() == metrics.snapshot()


@pytest.mark.unit
def test_a_server_gets_a_folder_of_its_own_emptied_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    for name in (prometheus.MULTIPROCESS_DIR, prometheus._MADE_HERE, "GUNICORN_PID"):
        monkeypatch.setenv(name, "")  # restored (to unset) after the test, whatever prepare_directory() sets
        monkeypatch.delenv(name)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = prometheus.prepare_directory()
    assert made is not None and os.path.isdir(made) and os.environ[prometheus.MULTIPROCESS_DIR] == made
    (pathlib.Path(made) / "counter_1.db").write_bytes(b"stale")
    prometheus.on_starting(None)
    assert os.listdir(made) == [], "a previous run's files are gone"


def _exit_after(tmp_path: pathlib.Path, code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` after prepare_directory() in a process of its own (TMPDIR=tmp_path); what it printed."""
    script = "import os, sys, types\nfrom wsgi_ws.integrations import prometheus\nmade = prometheus.prepare_directory()\n" + code
    environment = {k: v for k, v in os.environ.items() if k not in (prometheus.MULTIPROCESS_DIR, prometheus._MADE_HERE)}
    environment.update(TMPDIR=str(tmp_path), **(env or {}))
    return _python(script, environment).stdout


@pytest.mark.e2e
def test_the_folder_made_is_removed_when_the_process_exits_but_not_by_a_forked_worker_nor_after_a_re_exec(
    tmp_path: pathlib.Path,
) -> None:
    _exit_after(tmp_path, "pass")
    assert list(tmp_path.glob("wsgi-ws-metrics-*")) == [], "removed at exit, with no master ever run"
    printed = _exit_after(tmp_path, "pid = os.fork()\nif pid == 0:\n    sys.exit(0)\nos.waitpid(pid, 0)\nprint(os.path.isdir(made))")
    assert printed.strip() == "True", "a forked worker's exit leaves it"
    assert list(tmp_path.glob("wsgi-ws-metrics-*")) == [], "then the master's exit removes it"
    _exit_after(tmp_path, "prometheus.on_exit(types.SimpleNamespace(reexec_pid=4242))")
    (kept,) = tmp_path.glob("wsgi-ws-metrics-*")  # a new master started by USR2 goes on with it
    _exit_after(tmp_path, "pass", env={prometheus.MULTIPROCESS_DIR: str(kept), prometheus._MADE_HERE: str(kept)})
    assert not kept.exists(), "the new master removes it at its own exit"
    given = tmp_path / "given"
    _exit_after(tmp_path, "pass", env={prometheus.MULTIPROCESS_DIR: str(given)})
    assert given.is_dir(), "a folder the user named is theirs"


@pytest.mark.e2e
@pytest.mark.parametrize("env", [{}, {"WS_KEEP_ALIVE_INTERVAL": "soon"}], ids=["check-config", "bad-option"])
def test_a_config_loaded_without_serving_leaves_no_folder(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path), **env}
    subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config", "app:app"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        timeout=60,
    )
    assert list(tmp_path.glob("wsgi-ws-metrics-*")) == []


# Two workers: connections spread over both, then scraped through whichever worker takes the request.

WORKERS_ENV = {"WSGI_WS_WORKERS": "2", "WSGI_WS_LOG_LEVEL": "info"}


def worker_of(server: GunicornServer, ws: ClientConnection, path: str = "/ws") -> int:
    """The pid of the worker that accepted ``ws`` (its ``ws.accept`` line names the client's port)."""
    port = ws.socket.getsockname()[1]
    pattern = re.compile(rf"\[(\d+)\] \[INFO\] ws\.accept path={path} peer=127\.0\.0\.1:{port} ")
    found: list[int] = []

    def logged() -> bool:
        match = pattern.search(server.log())
        if match:
            found.append(int(match.group(1)))
        return bool(match)

    wait_until(logged, f"the ws.accept line of port {port}")
    return found[0]


def fetch(server: GunicornServer, path: str) -> str:
    with urllib.request.urlopen(f"{server.http_url}{path}", timeout=TIMEOUT) as response:
        return str(response.read().decode())


@pytest.fixture
def two_workers() -> Iterator[GunicornServer]:
    server = GunicornServer(env=WORKERS_ENV)
    try:
        server.wait_for_log("Booting worker with pid", timeout=TIMEOUT)
        wait_until(lambda: len(set(re.findall(r"Booting worker with pid: (\d+)", server.log()))) == 2, "two workers booted")
        yield server
    finally:
        server.stop()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_metrics_and_stats_of_any_worker_count_the_whole_server(two_workers: GunicornServer) -> None:
    server = two_workers
    by_worker: dict[int, list[ClientConnection]] = {}
    with contextlib.ExitStack() as stack:
        for _ in range(100):  # until each worker holds three: the kernel picks which worker accepts
            ws = stack.enter_context(connect(f"{server.url}/ws", open_timeout=TIMEOUT))
            ws.send("x" * 100)
            assert ws.recv(timeout=TIMEOUT) == "x" * 100
            by_worker.setdefault(worker_of(server, ws), []).append(ws)
            if len(by_worker) == 2 and min(map(len, by_worker.values())) >= 3:
                break
        assert len(by_worker) == 2, "both workers took connections"
        opened = sum(map(len, by_worker.values()))
        with pytest.raises(InvalidStatus):
            connect(f"{server.url}/ws", origin=Origin("https://evil.example"), open_timeout=TIMEOUT)

        def scraped() -> dict[str, float]:
            return samples(fetch(server, "/metrics"))

        def converged() -> bool:
            now = scraped()
            return (
                now.get('wsgi_ws_connections_open{route="/ws"}') == opened
                and now.get('wsgi_ws_messages_total{direction="in",route="/ws"}') == opened
                and now.get('wsgi_ws_connections_refused_total{reason="origin",route="/ws"}') == 1
            )

        wait_until(converged, "every worker's counts in one scrape (each exports within a second)")
        now = scraped()
        assert now['wsgi_ws_connections_accepted_total{route="/ws"}'] == opened
        assert now['wsgi_ws_message_size_bytes_bucket{direction="out",le="256.0",route="/ws"}'] == opened
        assert now['wsgi_ws_message_size_bytes_bucket{direction="out",le="64.0",route="/ws"}'] == 0
        for _ in range(6):  # whichever worker answers
            stats = json.loads(fetch(server, "/stats"))
            assert (stats["open"], stats["accepted"], stats["messages_out"], stats["refused"]) == (opened, opened, opened, 1)

        # One worker closes its connections normally; the other is killed with its connections open.
        closing, killed = sorted(by_worker)
        for ws in by_worker[closing]:
            ws.close()
        os.kill(killed, signal.SIGKILL)
        for ws in by_worker[killed]:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)

        def after_the_kill() -> bool:
            now = scraped()
            return now.get('wsgi_ws_connections_open{route="/ws"}') == 0 and now.get(
                'wsgi_ws_connections_closed_total{code="1000",route="/ws"}'
            ) == len(by_worker[closing])

        wait_until(after_the_kill, "the dead worker's connections no longer open (child_exit), the closed ones counted")
        assert scraped()['wsgi_ws_connections_accepted_total{route="/ws"}'] == opened, "a dead worker's totals stay"

        # The worker gunicorn started in its place serves (and so has its signal handlers before the server stops).
        # Bounded by time, not by a number of tries: on a loaded machine the new worker takes seconds to boot, and
        # until then the surviving worker takes every connection.
        def a_new_worker_accepted() -> bool:
            with connect(f"{server.url}/ws", open_timeout=TIMEOUT) as ws:
                return worker_of(server, ws) not in by_worker

        wait_until(a_new_worker_accepted, "a connection accepted by the worker gunicorn started after the kill", 3 * TIMEOUT)


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it")
def test_hub_deliveries_and_their_lag_are_counted_across_workers(redis_server: RedisServer) -> None:
    server = GunicornServer("tests.apps.routes:app", env={**WORKERS_ENV, "WS_HUB_URL": redis_server.url})
    try:
        with contextlib.ExitStack() as stack:
            by_worker: dict[int, list[ClientConnection]] = {}
            for _ in range(100):  # until each worker has two members of the group
                ws = stack.enter_context(connect(f"{server.url}/hub/room", open_timeout=TIMEOUT))
                by_worker.setdefault(json.loads(ws.recv(timeout=TIMEOUT))["pid"], []).append(ws)  # sent once joined
                if len(by_worker) == 2 and min(map(len, by_worker.values())) >= 2:
                    break
            members = [ws for group in by_worker.values() for ws in group]
            assert len(by_worker) == 2, "both workers have members"
            members[0].send("hello")
            for ws in members:
                assert ws.recv(timeout=TIMEOUT) == "hello"
            count = len(members)

            def delivered() -> bool:
                now = samples(fetch(server, "/metrics"))
                return (
                    now.get('wsgi_ws_hub_messages_total{event="delivered"}') == count
                    and now.get("wsgi_ws_hub_delivery_lag_seconds_count") == count
                    and now.get('wsgi_ws_hub_messages_total{event="received"}') == 2
                )

            wait_until(delivered, "every delivery, each with its lag, summed over the two workers")
            assert samples(fetch(server, "/metrics"))['wsgi_ws_hub_messages_total{event="dropped"}'] == 0
    finally:
        server.stop()
