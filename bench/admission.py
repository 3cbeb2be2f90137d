"""What the safe defaults cost per connection attempt: the origin check and the per-IP limits (issue 16's goal: each
check under 0.1 ms). Runs each check in this process, in a loop, and prints microseconds per attempt; the Redis row
talks to a real redis-server on loopback (one Lua call to admit, one to release: the attempt's wall time, round trip
included), then the admit alone and, for scale, one PING: the round trip that any exact count across workers pays.

    python bench/admission.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import Redis
from wsgi_ws.integrations.admission import Admission
from wsgi_ws.integrations.proxies import ENVIRON_KEY, TrustedProxies
from wsgi_ws.integrations.wsgi import check_origin
from wsgi_ws.options import WebSocketOptions

PROXIES = TrustedProxies(["127.0.0.1", "::1"], trust_unnamed_peers=True)


def environ(n: int) -> dict[str, object]:
    return {
        "REMOTE_ADDR": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "PATH_INFO": "/ws",
        "HTTP_HOST": "127.0.0.1:5000",
        "wsgi.url_scheme": "http",
        "HTTP_ORIGIN": "http://127.0.0.1:5000",
        ENVIRON_KEY: PROXIES,
    }


def per_attempt(check: Callable[[dict[str, object]], object], count: int) -> tuple[float, float]:
    """Microseconds per call of ``check`` over ``count`` requests from as many IPs (no cache warm): wall, this CPU's."""
    requests = [environ(n) for n in range(count)]
    started, cpu = time.perf_counter(), time.process_time()
    for request in requests:
        check(request)
    return (time.perf_counter() - started) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    same_origin = WebSocketOptions()
    limits = WebSocketOptions(max_connections_per_ip=10, max_connection_rate_per_ip=5)
    local = Admission()

    def admit_and_release(admission: Admission) -> Callable[[dict[str, object]], object]:
        def check(request: dict[str, object]) -> None:
            release = admission.admit(request, limits)
            if callable(release) and not hasattr(release, "status"):
                release()

        return check

    results = {
        "same-origin check (403 or pass)": per_attempt(lambda request: check_origin(request, same_origin), 50_000),  # type: ignore[arg-type]
        "rate + cap, this worker": per_attempt(admit_and_release(local), 50_000),
    }
    redis = Redis(Path(tempfile.mkdtemp(prefix="wsgi-ws-bench-admission-")))
    try:
        import redis as redis_py

        from wsgi_ws.hub.ip_counts import SharedCounts

        client = redis_py.Redis.from_url(redis.url)
        shared = SharedCounts(client, "bench-worker")
        results["rate + cap across workers (Redis: admit + release)"] = per_attempt(admit_and_release(Admission(lambda: shared)), 5_000)
        admit_alone = per_attempt(lambda request: shared.acquire("", str(request["REMOTE_ADDR"]), 10), 5_000)
        results["  of which the admit alone (one Lua call)"] = admit_alone
        results["  the floor: one Redis PING round trip (redis-py)"] = per_attempt(lambda request: client.ping(), 5_000)
    finally:
        redis.stop()
    if args.json:
        print(json.dumps({name: {"wall_us": round(wall, 2), "cpu_us": round(cpu, 2)} for name, (wall, cpu) in results.items()}))
        return
    print(f"{'check':55} {'wall µs':>9} {'CPU µs':>9}   (per connection attempt)")
    for name, (wall, cpu) in results.items():
        print(f"{name:55} {wall:9.1f} {cpu:9.1f}")


if __name__ == "__main__":
    main()
