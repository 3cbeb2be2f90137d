"""Fan-out benchmark of the broadcast hub: one publisher, N subscribers, in-memory versus Redis.

Run:  python bench/hub_fanout.py [--subscribers 1000] [--messages 200] [--rate 200]

For each backend it starts the sample app (`gunicorn -c gunicorn.conf.py app:app`) on a free loopback port, opens
the subscribers (asyncio `websockets` clients in this process) on `/chat/ws`, then a publisher sends chat lines at
`--rate` per second, each carrying its send time. Every subscriber checks that it got every line, in order, and
records the delivery latency. Printed per backend: deliveries, p50/p99/max latency, deliveries per second.

Backends: "memory, 1 worker" (the in-memory hub reaches one worker's members only) and "redis, 2 workers"
(WS_HUB_URL to a redis-server this script starts; members spread over both workers). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Ready to accept connections" in line:
            return process, f"redis://127.0.0.1:{port}/0"
    raise RuntimeError("redis-server did not start")


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_"))}
    environment.update({"WSGI_WS_BIND": f"127.0.0.1:{port}", "WSGI_WS_ACCESS_LOG": "/dev/null", "WSGI_WS_LOG_LEVEL": "warning"})
    environment.update({"WSGI_WS_WORKER_CONNECTIONS": "5000", "WS_HUB_QUEUE_LIMIT": "100000"})
    environment.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT, env=environment, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


async def run(port: int, subscribers: int, messages: int, rate: float) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/chat/ws"
    clients = []
    for start in range(0, subscribers, 100):  # connect in batches: the listen backlog is finite
        batch = range(start, min(subscribers, start + 100))
        clients += await asyncio.gather(*(connect(url, max_size=None, ping_interval=None) for _ in batch))
    await asyncio.sleep(1.0)  # let every worker's hub subscribe
    latencies: list[float] = []
    failures: list[str] = []

    async def subscriber(ws) -> None:  # type: ignore[no-untyped-def]
        expected = 0
        while expected < messages:
            line = json.loads(await asyncio.wait_for(ws.recv(), 60))
            number, sent = (float(part) for part in line["text"].split())
            if int(number) != expected:
                failures.append(f"got {number} expecting {expected}")
                return
            latencies.append(time.time() - sent)
            expected += 1

    tasks = [asyncio.create_task(subscriber(ws)) for ws in clients]
    cpu_before = time.process_time()
    async with connect(url, ping_interval=None) as publisher:
        started = time.perf_counter()
        for number in range(messages):
            await publisher.send(json.dumps({"name": "bench", "text": f"{number} {time.time()}"}))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    client_cpu = (time.process_time() - cpu_before) / elapsed
    for ws in clients:
        await ws.close()
    if failures:
        raise AssertionError(failures[:5])
    latencies.sort()
    return {
        "deliveries": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": 1000 * latencies[-1],
        "per_s": len(latencies) / elapsed,
        "client_cpu": client_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200.0, help="messages published per second")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    redis_process, redis_url = start_redis()
    rows = []
    try:
        backends = (("memory, 1 worker", {"WSGI_WS_WORKERS": "1"}), ("redis, 2 workers", {"WSGI_WS_WORKERS": "2", "WS_HUB_URL": redis_url}))
        for name, env in backends:
            server, port = start_server(env)
            try:
                result = asyncio.run(run(port, args.subscribers, args.messages, args.rate))
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
            rows.append((name, result))
    finally:
        redis_process.terminate()
        redis_process.wait(10)
    print(f"fan-out: {args.subscribers} subscribers, {args.messages} messages at {args.rate:g}/s, {os.cpu_count()} cores")
    print("| backend | deliveries | p50 ms | p99 ms | max ms | deliveries/s | load generator CPU |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        cells = (
            f"{r['deliveries']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['per_s']:,.0f} | {r['client_cpu']:.0%}"
        )
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
