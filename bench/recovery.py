"""Nothing lost: resuming clients of the sample's /feed/<group> over two gunicorn masters and one Redis.

    python bench/recovery.py                       # the full run, about 4 minutes on 2 cores
    python bench/recovery.py --quick               # smoke mode for CI: every message checked, no timing claims
    python bench/recovery.py --scenarios jitter --json out.json

Every client counts each message of the group by its position (the offset after the epoch): it must get every
offset after the one it first joined at, once, in order, whatever happened in between. Scenarios:

    jitter    N clients over two masters of two workers each; every client is dropped (TCP cut, no close frame) at
              random every 10-20 s, stays offline 1.5-2.5 s, and comes back with ?since=<its last position>; a
              publisher at 2 messages/s for 60 s (AnyCable's published test of Socket.IO's recovery).
              Replay time: from the start of a reconnect (TCP and handshake included) until the client holds every
              message published before it began.
    blip      the workers' Redis connections are killed (CLIENT KILL, every 100 ms for 2 s) while a publisher sends
              50 messages/s: nothing may be lost. Then Redis is restarted empty: every member must be told
              ``recovered=false``.
    restart   a rolling restart (SIGHUP to one master, then the other) with resuming clients and a publisher at 20
              messages/s: nothing may be lost; reconnect time from the close to the next ``joined``.
    people    disconnect_user from outside for 100 users with a connection on each of two masters (time until both
              closed), and presence after a worker with 100 entries is SIGKILLed (time until a watcher on the other
              master heard every leave), with tests/apps/routes.py's routes.

Exit status: 1 when a message was lost, duplicated or reordered, or a scenario could not run; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import connect

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import run as bench_run  # noqa: E402  (free ports, process trees, CPU of a tree, log)
from fanout import Redis  # noqa: E402  (a redis-server on a free port, restarted empty on demand)

from wsgi_ws.hub import disconnect_user  # noqa: E402
from wsgi_ws.hub.backends import encode  # noqa: E402
from wsgi_ws.hub.history import History  # noqa: E402
from wsgi_ws.hub.redis_streams import Streams  # noqa: E402

PY = sys.executable
log = bench_run.log
GROUP = "bench"
HISTORY = History(1000, 300.0)


# ---------------------------------------------------------------------------------------------------- servers


class Master:
    """One gunicorn master ("machine") serving app:app with two workers and the hub on Redis."""

    def __init__(self, name: str, redis_url: str, logdir: Path, workers: int = 2, app: str = "app:app", **extra: str) -> None:
        self.port = bench_run.free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = logdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_"))}
        env.update(
            WSGI_WS_BIND=f"127.0.0.1:{self.port}",
            WSGI_WS_WORKERS=str(workers),
            WSGI_WS_WORKER_CONNECTIONS="5000",
            WSGI_WS_ACCESS_LOG="/dev/null",
            WSGI_WS_LOG_LEVEL="warning",
            WSGI_WS_GRACEFUL_TIMEOUT="10",
            WS_HUB_URL=redis_url,
            WS_HUB_HISTORY_SIZE=str(HISTORY.size),
            **extra,
        )
        with self.log.open("wb") as out:
            argv = [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", app]
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} is not listening after 30 s") from None
                time.sleep(0.05)

    def workers(self) -> list[int]:
        return [pid for pid in bench_run.process_tree(self.proc.pid) if pid != self.proc.pid]

    def stop(self) -> None:
        bench_run.stop_group(self.proc, 15)


class Publisher:
    """Publishes "<n>" to the group through the history script, at a steady rate, from its own Redis connection."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5)
        self.id = int(self.client.client_id())
        self.streams = Streams(self.client)
        self.count = 0
        self.failed = 0

    async def run(self, rate: float, seconds: float) -> None:
        start = time.monotonic()
        total = int(rate * seconds)
        while self.count < total:
            due = start + self.count / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                self.streams.append(GROUP, encode(str(self.count + 1)), HISTORY)
                self.count += 1
            except redis.RedisError:
                self.failed += 1  # the publisher's connection was killed too: try again (redis-py reconnects)
                await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------------- clients


@dataclass
class Client:
    """One resuming client: what it got, by offset, and how long its reconnects and replays took."""

    base: str
    first: int | None = None  # the offset it first joined at: it must get everything after it
    last: int = 0
    position: str = ""
    duplicates: int = 0
    gaps: int = 0
    unrecovered: int = 0
    told_lost: int = 0
    joins: int = 0
    replays: list[float] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)
    closed_at: float | None = None

    since_sent: str = ""

    def url(self) -> str:
        self.since_sent = self.position
        return self.base + (f"?since={urllib.parse.quote(self.position)}" if self.position else "")

    def joined(self, frame: dict[str, Any], resuming: bool) -> None:
        self.joins += 1
        if resuming and not frame["recovered"]:
            self.unrecovered += 1
        if self.first is None:
            self.first = self.last = int(frame["position"].rpartition("-")[2])
            self.position = frame["position"]
        if self.closed_at is not None:
            self.reconnects.append(time.monotonic() - self.closed_at)
            self.closed_at = None

    def got(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "joined":  # mid-stream: messages were lost and the server says so
            self.told_lost += 1
            self.last = int(frame["position"].rpartition("-")[2]) if frame["position"] else 0
            self.position = frame["position"]
            return
        self.got_message(frame["position"])

    def got_message(self, position: str) -> None:
        offset = int(position.rpartition("-")[2])
        if offset <= self.last:
            self.duplicates += 1
            if os.environ.get("BENCH_DEBUG"):
                log(f"duplicate {offset} after {self.last} (join {self.joins}, since {self.since_sent})")
            return
        self.gaps += offset - self.last - 1
        self.last = offset
        self.position = position


class FeedListener(WSListener):
    """One connection of a client, in picows (compiled, so 1,000 clients at 20 messages/s fit in the generator):
    the ``joined`` frame, then every message counted by its offset; replays timed from ``started``."""

    def __init__(self, client: Client, started: float, owed: int, resuming: bool) -> None:
        self.client, self.started, self.owed, self.resuming = client, started, owed, resuming
        self.replayed = client.last >= owed
        self.joined = asyncio.get_running_loop().create_future()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        payload = frame.get_payload_as_bytes()
        client = self.client
        if not self.joined.done():
            client.joined(json.loads(payload), self.resuming)
            self.joined.set_result(None)
            return
        if payload.startswith(MESSAGE):  # {"type": "message", "position": "<epoch>-<offset>", ...}: no JSON parse
            start = len(MESSAGE)
            end = payload.index(b'"', start)
            client.got_message(payload[start:end].decode("ascii"))
        else:
            client.got(json.loads(payload))
        if not self.replayed and client.last >= self.owed:
            self.replayed = True
            client.replays.append(time.monotonic() - self.started)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("closed before joining"))


MESSAGE = b'{"type": "message", "position": "'


async def resuming_client(client: Client, stop: asyncio.Event, plan: Plan, publisher: Publisher) -> None:
    """Connect, read, get dropped or closed, come back with since=; until ``stop``."""
    attempt = 0
    stopping = asyncio.ensure_future(stop.wait())
    while not stop.is_set():
        resuming = bool(client.position)
        started, owed = time.monotonic(), publisher.count
        transport: WSTransport | None = None
        try:
            transport, listener = await ws_connect(
                functools.partial(FeedListener, client, started, owed, resuming),
                client.url(),
                websocket_handshake_timeout=10,
            )
            assert isinstance(listener, FeedListener)
            await asyncio.wait_for(listener.joined, 10)
            attempt = 0
            wait = None if not plan.drops else plan.session()
            closed = asyncio.ensure_future(transport.wait_disconnected())
            await asyncio.wait([closed, stopping], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                transport.disconnect()
                return
            if not closed.done():  # dropped by us: TCP cut, no close frame; offline, then back
                closed.cancel()
                transport.disconnect()
                await asyncio.sleep(plan.offline())
                client.closed_at = time.monotonic()
                continue
        except Exception as exc:  # closed by the server, refused during a restart: come back
            if os.environ.get("BENCH_DEBUG"):
                log(f"client: {exc!r}")
            if transport is not None:
                transport.disconnect()
        if client.closed_at is None:
            client.closed_at = time.monotonic()
        attempt += 1
        await asyncio.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # back-off with full jitter


@dataclass
class Plan:
    drops: bool
    session_range: tuple[float, float] = (10.0, 20.0)
    offline_range: tuple[float, float] = (1.5, 2.5)

    def session(self) -> float:
        return random.uniform(*self.session_range)

    def offline(self) -> float:
        return random.uniform(*self.offline_range)


def verify(clients: list[Client], publisher: Publisher) -> dict[str, Any]:
    """Everything each client should have had from its first join to the end, and what it lacked or got twice."""
    expected = sum(publisher.count - (c.first or 0) for c in clients)
    missing = sum(max(0, publisher.count - c.last) for c in clients) + sum(c.gaps for c in clients)
    replays = sorted(r for c in clients for r in c.replays)
    reconnects = sorted(r for c in clients for r in c.reconnects)
    return {
        "clients": len(clients),
        "published": publisher.count,
        "expected_deliveries": expected,
        "lost": missing,
        "delivered_pct": 100.0 * (expected - missing) / expected if expected else 100.0,
        "duplicates": sum(c.duplicates for c in clients),
        "unrecovered_joins": sum(c.unrecovered for c in clients),
        "joins": sum(c.joins for c in clients),
        "replays": len(replays),
        "replay_p50_s": _quantile(replays, 0.5),
        "replay_p99_s": _quantile(replays, 0.99),
        "reconnects": len(reconnects),
        "reconnect_p50_s": _quantile(reconnects, 0.5),
        "reconnect_p99_s": _quantile(reconnects, 0.99),
        "reconnect_max_s": _quantile(reconnects, 1.0),
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


async def open_clients(
    masters: list[Master], count: int, stop: asyncio.Event, plan: Plan, publisher: Publisher
) -> tuple[list[Client], list[asyncio.Task[None]]]:
    clients = [Client(f"{masters[i % len(masters)].url}/feed/{GROUP}") for i in range(count)]
    tasks = []
    for index, client in enumerate(clients):
        tasks.append(asyncio.ensure_future(resuming_client(client, stop, plan, publisher)))
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # a steady ramp, not 1,000 handshakes at once
    deadline = time.monotonic() + 60
    while any(c.first is None for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sum(c.first is None for c in clients)} clients did not join within 60 s")
        await asyncio.sleep(0.05)
    return clients, tasks


async def settle(clients: list[Client], publisher: Publisher, limit: float) -> None:
    """Until every client is connected and holds every message published (or ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(c.last < publisher.count or c.closed_at is not None for c in clients):
        await asyncio.sleep(0.05)


async def finish(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stop.set()
    await asyncio.wait(tasks, timeout=10)


# ---------------------------------------------------------------------------------------------------- scenarios


async def jitter(redis_url: str, masters: list[Master], quick: bool) -> dict[str, Any]:
    count, rate, seconds = (40, 10.0, 8.0) if quick else (1000, 2.0, 60.0)
    plan = Plan(True, (2.0, 4.0), (0.3, 0.8)) if quick else Plan(True)
    publisher, stop = Publisher(redis_url), asyncio.Event()
    clients, tasks = await open_clients(masters, count, stop, plan, publisher)
    await publisher.run(rate, seconds)
    plan.drops = False  # the last round: everyone comes back and stays
    await settle(clients, publisher, 30)
    await finish(stop, tasks)
    return verify(clients, publisher)


async def blip(redis_server: Redis, masters: list[Master], quick: bool) -> dict[str, Any]:
    count = 20 if quick else 200
    publisher, stop = Publisher(redis_server.url), asyncio.Event()
    clients, tasks = await open_clients(masters, count, stop, Plan(False), publisher)
    killer = redis.Redis.from_url(redis_server.url)
    killed = 0

    async def kill_for(seconds: float) -> None:
        nonlocal killed
        await asyncio.sleep(1.0)
        end = time.monotonic() + seconds
        mine = {publisher.id, int(killer.client_id())}
        while time.monotonic() < end:
            for entry in killer.client_list():
                if int(entry["id"]) not in mine:
                    killed += int(killer.execute_command("CLIENT", "KILL", "ID", entry["id"]))
            await asyncio.sleep(0.1)

    await asyncio.gather(publisher.run(50.0, 4.0 if quick else 6.0), kill_for(2.0))
    await settle(clients, publisher, 20)
    result = verify(clients, publisher)
    result["connections_killed"] = killed
    # Redis restarted without its data: every member must be told.
    redis_server.restart()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(c.told_lost == 0 for c in clients):
        await asyncio.sleep(0.05)
    result["told_recovered_false"] = sum(c.told_lost > 0 for c in clients)
    await finish(stop, tasks)
    return result


async def rolling_restart(redis_url: str, masters: list[Master], quick: bool) -> dict[str, Any]:
    count, seconds = (40, 6.0) if quick else (1000, 30.0)
    publisher, stop = Publisher(redis_url), asyncio.Event()
    clients, tasks = await open_clients(masters, count, stop, Plan(False), publisher)

    async def restarts() -> None:
        for master in masters:
            await asyncio.sleep(seconds / (len(masters) + 1))
            os.kill(master.proc.pid, signal.SIGHUP)

    await asyncio.gather(publisher.run(20.0, seconds), restarts())
    await settle(clients, publisher, 30)
    await finish(stop, tasks)
    return verify(clients, publisher)


async def people(redis_url: str, logdir: Path, quick: bool) -> dict[str, Any]:
    """disconnect_user across two masters, and presence converging after a worker is SIGKILLed."""
    count, heartbeat = (10, 0.5) if quick else (100, 2.0)
    routes = "tests.apps.routes:app"  # its /hub/<group>?user= and /presence/<group> name users and join with presence
    masters = [Master(f"people-{n}", redis_url, logdir, workers=1, app=routes, WS_HUB_PRESENCE_HEARTBEAT=str(heartbeat)) for n in range(2)]
    try:
        pairs = []
        for number in range(count):
            pair = []
            for master in masters:
                ws = await connect(f"{master.url}/hub/people?user=u{number}", ping_interval=None, max_queue=None)
                await ws.recv()  # {"pid": ...}: joined
                pair.append(ws)
            pairs.append(pair)
        closes = []
        for number, pair in enumerate(pairs):
            started = time.monotonic()
            await asyncio.to_thread(disconnect_user, redis_url, f"u{number}", 4001, "revoked")
            for ws in pair:
                await ws.wait_closed()
                assert ws.close_code == 4001, ws.close_code
            closes.append(time.monotonic() - started)
        closes.sort()
        # Presence: watch from the first machine, SIGKILL the second's worker with `count` connections present.
        watcher = await connect(f"{masters[0].url}/presence/room?user=watcher&watch=1", ping_interval=None, max_queue=None)
        victims = [await connect(f"{masters[1].url}/presence/room?user=v{n}", ping_interval=None) for n in range(count)]
        for ws in victims:
            await ws.recv()
        joins = 0
        while joins < count + 1:  # its own join and the victims' (the hello frame {"pid", "worker"} has no kind)
            joins += json.loads(await asyncio.wait_for(watcher.recv(), 30)).get("kind") == "join"
        (victim_worker,) = masters[1].workers()
        os.kill(victim_worker, signal.SIGKILL)
        killed = time.monotonic()
        leaves = 0
        while leaves < count:
            leaves += json.loads(await asyncio.wait_for(watcher.recv(), 30)).get("kind") == "leave"
        converged = time.monotonic() - killed
        for ws in [watcher, *victims]:
            ws.transport.abort()
        return {
            "users": count,
            "disconnect_p50_ms": 1000 * closes[len(closes) // 2],
            "disconnect_p99_ms": 1000 * closes[min(len(closes) - 1, int(0.99 * len(closes)))],
            "disconnect_max_ms": 1000 * closes[-1],
            "presence_heartbeat_s": heartbeat,
            "presence_entries_killed": count,
            "presence_converged_s": converged,
            "presence_within_2x_heartbeat": converged <= 2 * heartbeat,
        }
    finally:
        for master in masters:
            master.stop()


SCENARIOS = ("jitter", "blip", "restart", "people")


async def main_async(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="wsgi-ws-bench-recovery-") as tmp:
        logdir = Path(args.logs or tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        for name in args.scenarios:
            redis_server = Redis(logdir)
            masters = [] if name == "people" else [Master(f"master-{index}", redis_server.url, logdir) for index in range(2)]
            started = time.monotonic()
            try:
                if name == "people":
                    result = await people(redis_server.url, logdir, args.quick)
                    result["took_s"] = time.monotonic() - started
                    results[name] = result
                    log(f"{name}: {json.dumps(result)}")
                    continue
                usage = resource.getrusage(resource.RUSAGE_SELF)
                if name == "jitter":
                    result = await jitter(redis_server.url, masters, args.quick)
                elif name == "blip":
                    result = await blip(redis_server, masters, args.quick)
                else:
                    result = await rolling_restart(redis_server.url, masters, args.quick)
                result["took_s"] = took = time.monotonic() - started
                after = resource.getrusage(resource.RUSAGE_SELF)
                result["loadgen_cpu_cores"] = (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / took
                results[name] = result
                log(f"{name}: {json.dumps(result)}")
                if result["lost"] or result["duplicates"] or result.get("told_recovered_false", result["clients"]) < result["clients"]:
                    failed = True
            except Exception as exc:  # reported, and the run fails
                log(f"{name}: could not run: {exc!r}")
                results[name] = {"error": repr(exc)}
                failed = True
            finally:
                for master in masters:
                    master.stop()
                redis_server.stop()
    print(table({k: v for k, v in results.items() if k != "people"}))
    if "people" in results and "error" not in results["people"]:
        r = results["people"]
        print(
            f"\ndisconnect_user, {r['users']} users with a connection on each of two masters: p50 {r['disconnect_p50_ms']:.0f} ms, "
            f"p99 {r['disconnect_p99_ms']:.0f} ms, max {r['disconnect_max_ms']:.0f} ms until both closed with 4001\n"
            f"presence: {r['presence_entries_killed']} entries of a SIGKILLed worker gone from the watcher's view in "
            f"{r['presence_converged_s']:.2f} s (heartbeat {r['presence_heartbeat_s']:.1f} s; goal: within twice that)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | clients | published | delivered | lost | duplicates | resumed, not recovered "
        "| replay p50 / p99 | reconnect p50 / p99 / max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |||||||")
            continue
        replay = f"{_s(r['replay_p50_s'])} / {_s(r['replay_p99_s'])}"
        reconnect = f"{_s(r['reconnect_p50_s'])} / {_s(r['reconnect_p99_s'])} / {_s(r['reconnect_max_s'])}"
        lines.append(
            f"| {name} | {r['clients']:,} | {r['published']:,} | {r['delivered_pct']:.2f}% | {r['lost']} | {r['duplicates']} "
            f"| {r['unrecovered_joins']} | {replay} | {reconnect} |"
        )
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: small, short, every message checked")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--json", help="write every raw number to this file")
    parser.add_argument("--logs", help="keep the servers' logs in this folder")
    args = parser.parse_args()
    bench_run.raise_open_files()
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
