"""Run every benchmark scenario against every server, one after another, and print a markdown table with ratios.

    pip install -r requirements.txt -r requirements-bench.txt
    python bench/run.py            # the full run, about 4 minutes on 2 cores
    python bench/run.py --quick    # smoke mode for CI: every server answers, every payload verified, no timing claims

Each server runs as its own process group on 127.0.0.1 (a free port), pinned to CPU 0 with ``taskset -c 0``; this
process, the load generator (``bench/loadgen.py``: picows on uvloop), pins itself to CPU 1. Every echo is checked
byte for byte. Progress goes to stderr, the table to stdout (and ``--json FILE`` keeps every raw number).

Exit status: 1 when wsgi-ws failed a scenario or a server did not start or answer; 0 otherwise (a peer failing a
scenario, such as a truncated 16 MiB reply, is a result shown in the table, not an error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS_DIR = BENCH / "servers"
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402

PY = sys.executable
#: The app the wsgi-ws column serves (``--wsgi-ws-app``); the sample Flask app unless told otherwise.
WSGI_WS_APP = ["app:app"]
#: The scenarios of one run, as ``bench_server`` names them (``--scenarios``; all by default).
SCENARIOS = ("f_idle", "a_small", "b_pingpong", "c_1mib", "d_16mib", "e_fan_in", "g_keepalive")
CONNECTION_LIMIT = "12000"  # worker_connections for the gunicorn servers: enough for the 10,000 idle connections


@dataclass
class Server:
    key: str
    label: str
    argv: Callable[[int], list[str]]
    env: Callable[[int, float | None], dict[str, str]] = lambda port, ping: {}
    pings: bool = False  # has keep-alive pings (scenario g)
    peer: bool = True  # a column with a ratio; False for the load-generator check
    cwd: Path = ROOT


def _gunicorn(worker: str, app: str) -> Callable[[int], list[str]]:
    return lambda port: [
        *(PY, "-m", "gunicorn", "-k", worker, "-w", "1", "--worker-connections", CONNECTION_LIMIT),
        *("-b", f"127.0.0.1:{port}", "--no-control-socket", "--log-level", "warning", "--chdir", str(BENCH / "servers"), app),
    ]


def _wsgi_ws_env(port: int, ping: float | None) -> dict[str, str]:
    env = {
        "WSGI_WS_BIND": f"127.0.0.1:{port}",
        "WSGI_WS_WORKERS": "1",
        "WSGI_WS_ACCESS_LOG": "/dev/null",
        "WSGI_WS_LOG_LEVEL": "warning",
        "WSGI_WS_WORKER_CONNECTIONS": CONNECTION_LIMIT,
        "WS_MAX_MESSAGE_SIZE": "32MiB",
    }
    if ping:
        env["WS_KEEP_ALIVE_INTERVAL"] = str(ping)
    return env


def _ping_env(port: int, ping: float | None) -> dict[str, str]:
    return {"BENCH_PING_INTERVAL": str(ping)} if ping else {}


SERVERS = [
    Server(
        "wsgi-ws",
        "wsgi-ws",
        lambda port: [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", WSGI_WS_APP[0]],
        _wsgi_ws_env,
        pings=True,
    ),
    Server("gws", "gevent-websocket 0.10.1", _gunicorn("geventwebsocket.gunicorn.workers.GeventWebSocketWorker", "gws_echo:app")),
    Server("flask-sock", "flask-sock 0.7", _gunicorn("gevent", "flask_sock_echo:app"), _ping_env, pings=True),
    Server("websockets", "websockets 17.4", lambda port: [PY, str(SERVERS_DIR / "websockets_echo.py"), str(port)], _ping_env, pings=True),
    Server("raw", "raw gevent limit", lambda port: [PY, str(SERVERS_DIR / "raw_gevent_echo.py"), str(port)]),
    Server(
        "picows",
        "picows server (load-gen check)",
        lambda port: [PY, str(SERVERS_DIR / "picows_echo.py"), str(port)],
        peer=False,
    ),
]


@dataclass
class Settings:
    quick: bool
    a_warmup: float = 1.0
    a_windows: int = 5
    b_windows: int = 5
    large_duration: float = 3.0
    large_min: tuple[int, int] = (5, 2)
    large_timeout: float = 15.0  # the slowest peer (gevent-websocket, ~15 MB/s) needs ~1.2 s per 16 MiB echo
    fan_in: tuple[int, int] = (1000, 10)
    idle: int = 5000
    keep_alive: tuple[int, float, float] = (10_000, 5.0, 15.0)  # connections, ping interval, window
    scenarios: tuple[str, ...] = SCENARIOS

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if not quick:
            return cls(quick)
        return cls(quick, 0.3, 1, 1, 0.2, (2, 1), 15.0, (100, 3), 200, (200, 1.0, 2.5))  # the slow peer gets its full time


# ---------------------------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM to ``proc``'s process group (started with ``start_new_session``), up to ``grace`` seconds to exit, then
    SIGKILL to whatever is left of the group (a gunicorn worker, say)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def tree_rss(pid: int) -> float:
    """Resident bytes of the process and its descendants (gunicorn's master and worker)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return float(total)


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of the process and its descendants so far."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


class Running:
    """A server process group: started pinned to CPU 0, waited for, and always killed."""

    def __init__(self, server: Server, ping: float | None, logdir: Path, pin: bool) -> None:
        self.server = server
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_", "BENCH_"))}
        env.update(server.env(self.port, ping))
        self.log = logdir / f"{server.key}{'-ping' if ping else ''}.log"
        argv = server.argv(self.port)
        if pin:
            argv = ["taskset", "-c", "0", *argv]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, cwd=server.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"not listening after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_group(self.proc, 5)

    def rss(self) -> float:
        return tree_rss(self.proc.pid)

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)


# ---------------------------------------------------------------------------------------------------- scenarios


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def attempt(results: dict[str, Any], name: str, coro: Coroutine[Any, Any, dict[str, Any]], timeout: float) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = await asyncio.wait_for(coro, timeout)
    except loadgen.Failure as error:
        results[name] = {"error": str(error)}
    except TimeoutError:
        results[name] = {"error": f"timeout after {timeout:.0f} s"}
    except Exception as error:
        results[name] = {"error": f"{type(error).__name__}: {error}"[:160]}
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results[name].items() if k != "windows"}
    log(f"    {name} ({time.perf_counter() - t0:.1f} s): {shown}")


async def bench_server(server: Server, settings: Settings, logdir: Path, pin: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    s = settings
    log(f"== {server.label}")
    run = Running(server, None, logdir, pin)
    try:
        run.wait_ready()
        await asyncio.wait_for(loadgen.echo_once(run.url), 30)
        results["up"] = True
        # idle memory first, on a fresh process: only the warm-up connection has been served
        wanted = set(s.scenarios)
        plan: list[tuple[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]], float]] = [
            ("f_idle", lambda: loadgen.hold_idle(run.url, s.idle, 2.0 if not s.quick else 0.3, run.rss), 120),
            ("a_small", lambda: loadgen.pipeline(run.url, 50, 16, s.a_warmup, s.a_windows, run.cpu), 60),
            ("b_pingpong", lambda: loadgen.pipeline(run.url, 1, 1, s.a_warmup / 2, s.b_windows, run.cpu), 60),
            ("c_1mib", lambda: loadgen.large(run.url, 1 << 20, s.large_min[0], s.large_duration, s.large_timeout), 60),
            ("d_16mib", lambda: loadgen.large(run.url, 16 << 20, s.large_min[1], s.large_duration, s.large_timeout), 60),
            ("e_fan_in", lambda: loadgen.fan_in(run.url, *s.fan_in), 120),
        ]
        for name, make, timeout in plan:
            if name in wanted:
                await attempt(results, name, make(), timeout)
        if run.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {run.proc.returncode}: {run.log_tail()}")
    except Exception as error:
        results["up"] = False
        results["error"] = f"{type(error).__name__}: {error}"[:300]
        log(f"    server failed: {results['error']}")
    finally:
        run.stop()
    if server.pings and results.get("up") and "g_keepalive" in s.scenarios:
        connections, interval, window = s.keep_alive
        run = Running(server, interval, logdir, pin)
        try:
            run.wait_ready()
            await attempt(results, "g_keepalive", loadgen.keep_alive(run.url, connections, window, run.cpu), 180)
        except Exception as error:
            results["g_keepalive"] = {"error": f"{type(error).__name__}: {error}"[:160]}
        finally:
            run.stop()
    return results


# ---------------------------------------------------------------------------------------------------- the table


def _get(scenario: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r.get(scenario, {}).get(key)


Row = tuple[str, str, str, Callable[[dict[str, Any]], Any], str]  # id, title, scenario, value, format


def rows(settings: Settings) -> list[Row]:
    conns, interval, window = settings.keep_alive
    return [
        ("a", "(a) 50 conns x 32 B text, 16 in flight: msgs/s", "a_small", _get("a_small", "msgs_per_s"), "{:,.0f}"),
        ("a_fair", "(a) fairness: slowest conn / mean", "a_small", _get("a_small", "fairness"), "{:.2f}"),
        ("a_p50", "(a) latency p50, ms", "a_small", _get("a_small", "p50_ms"), "{:.1f}"),
        ("a_p99", "(a) latency p99, ms", "a_small", _get("a_small", "p99_ms"), "{:.1f}"),
        ("a_cpu", "(a) CPU use, server / load generator", "a_small", _cpu_pair, "{}"),
        ("b", "(b) 1 conn ping-pong 32 B: msgs/s", "b_pingpong", _get("b_pingpong", "msgs_per_s"), "{:,.0f}"),
        ("c", "(c) 1 MiB binary echo: MB/s", "c_1mib", _get("c_1mib", "mb_per_s"), "{:,.0f}"),
        ("d", "(d) 16 MiB binary echo: MB/s", "d_16mib", _get("d_16mib", "mb_per_s"), "{:,.0f}"),
        ("e", f"(e) fan-in, {settings.fan_in[0]:,} conns x 1 msg at once: msgs/s", "e_fan_in", _get("e_fan_in", "msgs_per_s"), "{:,.0f}"),
        ("e_ms", "(e) fan-in: ms until all echoes are back", "e_fan_in", _get("e_fan_in", "round_ms"), "{:.1f}"),
        ("e_hs", "(e) handshakes/s (100 at a time)", "e_fan_in", _get("e_fan_in", "handshakes_per_s"), "{:,.0f}"),
        ("f", f"(f) {settings.idle:,} idle conns: KB RSS per conn", "f_idle", _get("f_idle", "kb_per_conn"), "{:.1f}"),
        (
            "g",
            f"(g) {conns:,} idle conns, pings every {interval:g} s: server CPU",
            "g_keepalive",
            _get("g_keepalive", "cpu_percent"),
            "{:.1f}%",
        ),
        ("g_us", "(g) server CPU per ping, us", "g_keepalive", _get("g_keepalive", "us_per_ping"), "{:.0f}"),
        ("g_n", f"(g) pings answered by the client in {window:g} s", "g_keepalive", _get("g_keepalive", "pings"), "{:,.0f}"),
    ]


def _cpu_pair(r: dict[str, Any]) -> str | None:
    a = r.get("a_small", {})
    return f"{100 * a['server_cpu']:.0f}% / {100 * a['loadgen_cpu']:.0f}%" if "server_cpu" in a else None


# row id -> (goal text, whether the test takes the ratios to the peers (True) or wsgi-ws's own value, test)
GOALS: dict[str, tuple[str, bool, Callable[[Any], bool]]] = {
    "a": ("≥ 2x gws and ≥ 2x websockets", True, lambda r: r["gws"] >= 2 and r["websockets"] >= 2),
    "a_fair": ("≥ 0.5", False, lambda v: v >= 0.5),
    "a_p99": ("< 50 ms", False, lambda v: v < 50),
    "b": ("≥ 0.9x raw", True, lambda r: r["raw"] >= 0.9),
    "c": ("≥ 1x websockets", True, lambda r: r["websockets"] >= 1),
    "d": ("≥ 1x websockets", True, lambda r: r["websockets"] >= 1),
    "e_hs": ("≥ 1.2x gws", True, lambda r: r["gws"] >= 1.2),
    "f": ("≤ 12 KB", False, lambda v: v <= 12),
    "g": ("10,000 held with pings on", False, lambda v: v is not None),
}


def cell(results: dict[str, Any], scenario: str, value: Any, fmt: str, server: Server) -> str:
    if not results.get("up"):
        return "server failed"
    if scenario == "g_keepalive" and not server.pings:
        return "no pings"
    r = results.get(scenario)
    if r is None:
        return "not run"
    if "error" in r:
        return "FAIL: " + r["error"].replace("|", "/")[:70]
    return "-" if value is None else fmt.format(value)


def table(all_results: dict[str, dict[str, Any]], settings: Settings) -> str:
    servers = [s for s in SERVERS if s.key in all_results]
    peers = [s for s in servers if s.peer and s.key != "wsgi-ws"]
    judge = not settings.quick  # quick windows are too short to judge a goal by
    head = ["scenario", *(s.label for s in servers), *(f"wsgi-ws / {s.key}" for s in peers), *(["goal (issue 6)"] if judge else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ours = all_results.get("wsgi-ws", {})
    for row_id, title, scenario, get, fmt in rows(settings):
        if scenario not in settings.scenarios:
            continue
        values = {s.key: (get(all_results[s.key]) if all_results[s.key].get("up") else None) for s in servers}
        cells = [cell(all_results[s.key], scenario, values[s.key], fmt, s) for s in servers]
        ratios: dict[str, float] = {}
        for s in peers:
            ok = "error" not in ours.get(scenario, {}) and "error" not in all_results[s.key].get(scenario, {})
            mine, theirs = values.get("wsgi-ws"), values[s.key]
            if ok and isinstance(mine, int | float) and isinstance(theirs, int | float) and theirs:
                ratios[s.key] = mine / theirs
        ratio_cells = [f"{ratios[s.key]:.2f}x" if s.key in ratios else "-" for s in peers]
        goal = ""
        if row_id in GOALS and "wsgi-ws" in values:
            text, on_ratios, test = GOALS[row_id]
            mine = values["wsgi-ws"]
            if row_id == "g" and settings.keep_alive[0] < 10_000:
                goal = f"{text}: not measured ({settings.keep_alive[0]:,} conns)"
            elif on_ratios and all(k in ratios for k in ("gws", "websockets", "raw") if k in text):
                goal = f"{text}: {'met' if test(ratios) else 'MISSED'}"
            elif not on_ratios and mine is not None:
                goal = f"{text}: {'met' if test(mine) else 'MISSED'}"
            else:
                goal = f"{text}: not measured"
        lines.append("| " + " | ".join([title, *cells, *ratio_cells, *([goal] if judge else [])]) + " |")
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


# ---------------------------------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace, settings: Settings, pin: bool) -> dict[str, dict[str, Any]]:
    logdir = Path(tempfile.mkdtemp(prefix="wsgi-ws-bench-"))
    log(f"server logs in {logdir}")
    all_results: dict[str, dict[str, Any]] = {}
    for server in SERVERS:
        if args.servers and server.key not in args.servers:
            continue
        all_results[server.key] = await bench_server(server, settings, logdir, pin)
    return all_results


def raise_open_files(want: int = 20000) -> int:
    """Raise the soft open-file limit to ``want`` (or the hard limit, if lower); servers inherit it. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_load_generator() -> bool:
    """Pin this process (the load generator) to CPU 1, servers go on CPU 0 with ``taskset -c 0``; False if it cannot."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None:
        os.sched_setaffinity(0, {1})
        return True
    log("fewer than 2 CPUs or no taskset: nothing is pinned, and the numbers mean little")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: a few seconds per server, payloads verified")
    parser.add_argument("--servers", nargs="*", choices=[s.key for s in SERVERS], help="only these servers")
    parser.add_argument("--json", type=Path, help="also write every raw number to this file")
    parser.add_argument(
        "--wsgi-ws-app",
        default="app:app",
        metavar="MODULE:APP",
        help="the WSGI app wsgi-ws serves, echoing at /ws (default: the sample Flask app; e.g. tests.apps.plain_wsgi:echo_app)",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="only these scenarios (e_fan_in: handshakes per second, with the 1,000-connection fan-in)",
    )
    args = parser.parse_args()
    WSGI_WS_APP[0] = args.wsgi_ws_app
    settings = Settings.make(args.quick)
    settings.scenarios = tuple(args.scenarios)

    limit = raise_open_files()
    needed = max(settings.idle, settings.keep_alive[0]) + 200
    if limit < needed:
        log(f"open-file limit {limit} < {needed}: fewer idle connections for (f) and (g)")
        settings.idle = min(settings.idle, limit - 200)
        settings.keep_alive = (min(settings.keep_alive[0], limit - 200), *settings.keep_alive[1:])

    pin = pin_load_generator()

    started = time.perf_counter()
    all_results = uvloop.run(main_async(args, settings, pin))
    elapsed = time.perf_counter() - started

    mode = "quick (smoke; the numbers are not measurements)" if args.quick else "full"
    print(f"\n{machine()}; server on CPU 0, load generator on CPU 1; {time.strftime('%Y-%m-%d')}; mode: {mode}; took {elapsed:.0f} s\n")
    print(table(all_results, settings))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "mode": mode, "elapsed_s": elapsed, "results": all_results}, indent=1))

    failed = [k for k, r in all_results.items() if not r.get("up")]
    ours = all_results.get("wsgi-ws", {})
    failed += [f"wsgi-ws {name}" for name, r in ours.items() if isinstance(r, dict) and "error" in r]
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
