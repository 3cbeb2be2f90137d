"""The fan-out benchmark's smoke run (``bench/fanout.py --quick``) against wsgi-ws: every delivery verified.

One publisher and 1,000 (then 100) subscribers, in memory with one worker and over Redis with two: every subscriber
must get every message exactly once and in order, byte for byte, which the load generator checks. No speed is
asserted: the quick windows are far too short for their numbers to mean anything.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bench_kit import run_quick
from tests.redis_server import REDIS

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("s1", "s2", "s3", "s4")
HAVE_REDIS = shutil.which(REDIS) is not None
SERVERS = ("wsgi-ws-memory", "wsgi-ws-redis") if HAVE_REDIS else ("wsgi-ws-memory",)
needs_redis = pytest.mark.skipif(not HAVE_REDIS, reason="redis-server missing (apt-get install redis-server); CI installs it")

Smoke = tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    run, written = run_quick("fanout.py", tmp_path_factory.mktemp("fanout") / "quick.json", "--servers", *SERVERS, timeout=150)
    results: dict[str, dict[str, Any]] = written["results"]
    return run, results


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_quick_fanout_exits_0_and_prints_the_table(smoke: Smoke) -> None:
    run, results = smoke
    assert run.returncode == 0, f"bench/fanout.py --quick failed:\n{run.stderr[-3000:]}"
    assert set(results) == set(SERVERS)
    for key in SERVERS:
        assert results[key].get("up") is True, f"{key} did not start: {results[key].get('error')}"
    assert "| scenario | wsgi-ws memory |" in run.stdout, run.stdout
    assert "(3) saturation: 1,000 subs, 8 msgs in flight: deliveries/s" in run.stdout, run.stdout


@pytest.mark.e2e
@pytest.mark.timeout(180)
@pytest.mark.parametrize("server", SERVERS)
def test_every_delivery_arrived_once_and_in_order(smoke: Smoke, server: str) -> None:
    for scenario in SCENARIOS:
        outcome = smoke[1][server].get(scenario)
        assert isinstance(outcome, dict), f"{server}: scenario {scenario} did not run"
        assert "error" not in outcome, f"{server} {scenario}: {outcome['error']}"
        assert outcome["complete"] is True, f"{server} {scenario}: {outcome['missing_after_drain']} deliveries missing"
        assert outcome["sent"] > 0
        assert outcome["verified"] == outcome["sent"] * outcome["subscribers"], f"{server} {scenario}: {outcome}"
        assert outcome["deliveries_per_s"] > 0 and outcome["p50_ms"] is not None


@pytest.mark.e2e
@pytest.mark.timeout(180)
@needs_redis
def test_the_redis_run_spreads_subscribers_over_both_workers(smoke: Smoke) -> None:
    spread = [smoke[1]["wsgi-ws-redis"][scenario]["sockets_per_process"] for scenario in ("s1", "s2", "s3")]  # 1,000 each
    assert any(sum(n >= 10 for n in sockets.values()) == 2 for sockets in spread), f"open sockets per process: {spread}"


# ------------------------------------------------------------------------------------------ the generator's verifier


@pytest.fixture(scope="module")
def fanout() -> Any:
    """bench/fanout.py as a module (bench/ is no package, and mypy does not check it)."""
    spec = importlib.util.spec_from_file_location("fanout_under_test", ROOT / "bench" / "fanout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


class FakeTransport:
    """Collects what a connection writes, one frame per write."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def verify(fanout: Any, build: Callable[[list[bytes], bytes], bytes], sio: bool = False, step: int = 4096) -> Any:
    """Publish 20 messages, then feed a subscriber ``build(frames, probe)`` in reads of ``step`` bytes."""

    async def run() -> Any:
        state = fanout.Run(1, sio)
        publisher = fanout.Publisher(state, "/pub")
        publisher.transport = FakeTransport()
        publisher.send(20)
        size = state.frame_size
        frames = [bytes(state.stream[i * size : (i + 1) * size]) for i in range(20)]
        probe = fanout.server_frame(state.wrap[0] + fanout.PROBE + state.wrap[1])
        subscriber = fanout.Subscriber(state, "/sub")
        subscriber.transport = FakeTransport()
        accept = base64.b64encode(hashlib.sha1(subscriber.key + fanout.GUID).digest())
        response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        stream = response + build(frames, probe)
        for start in range(0, len(stream), step):
            subscriber.data_received(stream[start : start + step])
        return subscriber

    return asyncio.run(run())


WS_PING, ENGINE_IO_PING = b"\x89\x04ping", b"\x81\x012"
STEPS = (1, 5, 66, 100, 4096)


@pytest.mark.unit
@pytest.mark.timeout(30)
@pytest.mark.parametrize("sio", [False, True], ids=["websocket", "socketio"])
@pytest.mark.parametrize("step", STEPS)
def test_the_verifier_counts_every_message_whatever_the_read_boundaries_and_pings(fanout: Any, sio: bool, step: int) -> None:
    def build(frames: list[bytes], probe: bytes) -> bytes:
        between = [WS_PING, ENGINE_IO_PING if sio else b""]
        return probe + probe + b"".join(frame + between[i % 2] for i, frame in enumerate(frames))

    subscriber = verify(fanout, build, sio, step)
    assert subscriber.error is None
    assert subscriber.next == 20 and subscriber.probed
    assert subscriber.fast, "the next read may take the fast path again"
    written = subscriber.transport.written
    assert sum(frame[:2] == b"\x8a\x84" for frame in written) == 10, "every WebSocket ping got a (masked) pong"
    assert sum(frame[:2] == b"\x81\x81" for frame in written) == (10 if sio else 0), "every Engine.IO ping got a 3"


@pytest.mark.unit
@pytest.mark.timeout(30)
@pytest.mark.parametrize("step", STEPS)
def test_the_verifier_takes_a_message_framed_with_a_longer_length_field(fanout: Any, step: int) -> None:
    def build(frames: list[bytes], probe: bytes) -> bytes:
        long_form = b"\x81\x7e\x00\x40" + frames[4][2:]  # 64 as a 16-bit length: allowed to read, not minimal
        return b"".join([*frames[:4], long_form, *frames[5:]])

    subscriber = verify(fanout, build, step=step)
    assert subscriber.error is None and subscriber.next == 20


def _corrupt(frame: bytes) -> bytes:
    return frame[:-1] + (b"y" if frame[-1:] != b"y" else b"z")


WRONG: dict[str, tuple[Callable[[list[bytes], bytes], bytes], str, int]] = {
    "lost": (lambda f, p: b"".join(f[:5] + f[6:]), "message 6 arrived when 5 was next (lost or out of order)", 5),
    "duplicated": (lambda f, p: b"".join(f[:6] + f[5:]), "message 5 arrived again after 5 (a duplicate or out of order)", 6),
    "reordered": (lambda f, p: b"".join([*f[:5], f[6], f[5], *f[7:]]), "message 6 arrived when 5 was next", 5),
    "corrupted": (lambda f, p: b"".join([*f[:3], _corrupt(f[3]), *f[4:]]), "message 3 differs from what was sent", 3),
    "binary": (lambda f, p: b"".join([*f[:2], b"\x82" + f[2][1:], *f[3:]]), "an unexpected frame: opcode 2", 2),
    "probe late": (lambda f, p: b"".join([*f[:3], p, *f[3:]]), "a probe arrived after message 2", 3),
    "server closed": (lambda f, p: b"".join([*f[:1], b"\x88\x02\x03\xf3"]), "the server closed a connection with 1011", 1),
}


@pytest.mark.unit
@pytest.mark.timeout(30)
@pytest.mark.parametrize("step", (1, 66, 4096))
@pytest.mark.parametrize("case", WRONG, ids=list(WRONG))
def test_the_verifier_names_a_wrong_delivery(fanout: Any, case: str, step: int) -> None:
    build, error, counted = WRONG[case]
    subscriber = verify(fanout, build, step=step)
    assert subscriber.error is not None and subscriber.error.startswith(error), subscriber.error
    assert subscriber.next == counted
