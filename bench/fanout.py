"""Fan-out (broadcast) benchmark: one publisher, N subscribers, 64-byte text messages, every server in one run.

    pip install -r requirements.txt -r requirements-bench.txt       # and Debian's redis-server for the Redis columns
    python bench/fanout.py                                           # the full run, about 8 minutes on 2 cores
    python bench/fanout.py --quick                                   # smoke mode for CI: every delivery verified, no timing claims
    python bench/fanout.py --servers wsgi-ws-memory raw --json out.json

A delivery is one message reaching one subscriber. The load generator is this process, on uvloop: the publisher and
every subscriber. Each payload carries a sequence number and the publisher's send time (``time.perf_counter_ns``);
each subscriber compares every read, in one C-level comparison, with the exact bytes of the server frames of the
messages sent so far, so it checks that it gets every message exactly once, in order, byte for byte, without a Python
call per message (a picows callback per frame made the generator the bottleneck at ~550k deliveries/s: see
bench/README.md). Latency is receive time minus send time on the same clock. Scenarios:

    (1) 1,000 subscribers, 100 messages/s offered       (2) 1,000 subscribers, 1,000 messages/s offered
    (3) 1,000 subscribers, 8 messages in flight         (4) 100 subscribers, 8 messages in flight

Each server runs as its own process group on 127.0.0.1 (a free port) pinned to CPU 0 (``taskset -c 0``) while this
process pins itself to CPU 1; the two-worker Redis servers get both CPUs and the generator is then not pinned.
Progress goes to stderr, the markdown table to stdout, ``--json FILE`` keeps every raw number.

Exit status: 1 when a wsgi-ws server did not start, or lost, duplicated, reordered or corrupted a delivery (with
``--quick`` also when it had not delivered everything by the end of the drain); 0 otherwise. A peer failing or
falling behind is a result shown in the table, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import gc
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvloop

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS_DIR = BENCH / "servers"
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402  (bench/run.py: free ports, process trees, /proc CPU, server start and stop)
from loadgen import Failure, gather_connections  # noqa: E402  (a scenario that could not be measured; opening many)
from websockets.speedups import apply_mask  # noqa: E402

PY = sys.executable
perf_counter_ns = time.perf_counter_ns
log = bench_run.log

# ---------------------------------------------------------------------------------------------------- payloads

SIZE = 64
FILL = b"x" * (SIZE - 32)  # b"m" + 10-digit sequence number + b" " + 19-digit send time in ns + b" " = 32 bytes
PROBE = b"p" * SIZE  # sent until every subscriber has one: they are all subscribed before message 0 is sent
MASK_KEYS = [os.urandom(4) for _ in range(1024)]
# Socket.IO v5 over Engine.IO v4: an event is the Engine.IO message "4" + the Socket.IO EVENT "2" + a JSON array.
SIO_PUB = (b'42["pub","', b'"]')
SIO_SUB = (b'42["m","', b'"]')
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_U16, _U64 = struct.Struct("!H"), struct.Struct("!Q")


def client_frame(opcode: int, payload: bytes, n: int = 0) -> bytes:
    """One masked client frame (FIN set); the mask key is one of 1,024 drawn at start-up."""
    key = MASK_KEYS[n & 1023]
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0xFE)) + _U16.pack(size)
    else:
        header = bytes((0x80 | opcode, 0xFF)) + _U64.pack(size)
    return header + key + apply_mask(payload, key)


def server_frame(payload: bytes) -> bytes:
    """The unmasked text frame a server sends for a payload under 126 bytes (the minimal header: RFC 6455 5.2)."""
    return bytes((0x81, len(payload))) + payload


class Run:
    """One scenario's shared state: the byte stream every subscriber must receive, the send times, who has what."""

    def __init__(self, subscribers: int, sio: bool) -> None:
        self.subscribers = subscribers
        self.sio = sio
        self.wrap = SIO_SUB if sio else (b"", b"")
        self.frame_size = len(server_frame(self.wrap[0] + PROBE + self.wrap[1]))
        self.stream = bytearray()  # the server frames of every message sent, in order: what each subscriber must read
        self.stamps: list[int] = []  # by sequence number: the send time written into the message, perf_counter_ns
        self.at = [subscribers]  # at[k]: subscribers that have received exactly k messages
        self.completed = 0  # messages every subscriber has received = the smallest k with at[k] > 0
        self.measuring = False
        self.publisher: Publisher | None = None
        self.refill = False  # saturation: each completed message makes the publisher send the next one
        self.owed = 0

    @property
    def sent(self) -> int:
        return len(self.stamps)

    def expected(self, seq: int) -> bytes:
        """The payload (Socket.IO: the Engine.IO packet) of message ``seq`` as a subscriber must receive it."""
        start = seq * self.frame_size + 2
        return bytes(self.stream[start : start + self.frame_size - 2])

    def moved(self, before: int, after: int) -> None:
        """A subscriber went from ``before`` to ``after`` messages received."""
        at = self.at
        at[before] -= 1
        at[after] += 1
        if before == self.completed and not at[before]:
            done = before
            while not at[done]:
                done += 1
            self.completed = done
            if self.refill:
                if not self.owed:  # one write for every message completed in this turn of the event loop
                    asyncio.get_running_loop().call_soon(self.top_up)
                self.owed += done - before

    def top_up(self) -> None:
        """Saturation: send as many messages as have completed since the last top-up."""
        owed, self.owed = self.owed, 0
        if self.refill and owed and self.publisher is not None:
            self.publisher.send(owed)

    def latencies(self, subscribers: list[Subscriber]) -> Latencies:
        """The latency of every delivery recorded while measuring."""
        stamps = self.stamps
        histogram = Latencies()
        fine, coarse = histogram.fine, histogram.coarse
        for s in subscribers:
            for now, first, end in s.reads:
                for seq in range(first, end):
                    tens = (now - stamps[seq]) // 10_000
                    if tens < FINE:
                        fine[tens] += 1
                    else:
                        coarse[tens // 100] += 1
        return histogram


#: Latencies are counted in 10 us buckets up to 100 ms, in 1 ms buckets beyond.
FINE = 10_000


class Latencies:
    """A latency histogram; quantiles are bucket upper bounds, in ms."""

    def __init__(self) -> None:
        self.fine = [0] * FINE
        self.coarse: dict[int, int] = collections.defaultdict(int)

    def __len__(self) -> int:
        return sum(self.fine) + sum(self.coarse.values())

    def quantile(self, q: float) -> float | None:
        total = len(self)
        if not total:
            return None
        rank = min(total - 1, int(q * total))
        seen = 0
        for i, n in enumerate(self.fine):
            seen += n
            if seen > rank:
                return (i + 1) / 100
        for ms in sorted(self.coarse):
            seen += self.coarse[ms]
            if seen > rank:
                return float(ms + 1)
        raise AssertionError("unreachable")


class Connection(asyncio.Protocol):
    """A WebSocket client connection on uvloop: the upgrade, frame parsing, pings, Socket.IO's handshake and pings.

    ``data_received`` hands complete server frames to :meth:`frame`; :class:`Subscriber` first tries its fast path.
    """

    def __init__(self, run: Run, path: str) -> None:
        self.run = run
        self.sio = run.sio
        self.path = path
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        self.head = b""
        self.upgraded = False
        self.buf = b""  # the start of a frame that is not complete yet
        self.fast = False  # upgraded, nothing left over, no error: a subscriber's next read may take the fast path
        self.error: str | None = None
        self.closing = False
        self.lost = False
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()  # plain WebSocket: the upgrade; Socket.IO: its "40"
        self.gone = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is no asyncio.Transport subclass
        host = f"127.0.0.1:{transport.get_extra_info('peername')[1]}"
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + self.key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.lost = True
        if not self.gone.done():
            self.gone.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(Failure("the server closed the connection during the handshake"))

    def fail(self, reason: str) -> None:
        self.fast = False
        if self.error is None:
            self.error = reason

    def hold(self, partial: bytes) -> int:
        """Keep the start of a frame until the rest arrives."""
        self.buf = partial
        self.fast = False
        return -1

    def write(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(opcode, payload))

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            data = self.upgrade(data)
            if not data:
                return
        self.frames(data)

    def upgrade(self, data: bytes) -> bytes:
        """Collect the 101 response; return what followed it."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > 65536 and not self.ready.done():
                self.ready.set_exception(Failure("no end of the upgrade response in 64 KiB"))
            return b""
        head, rest = self.head[:end], self.head[end + 4 :]
        lines = head.split(b"\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        if not lines[0].startswith(b"HTTP/1.1 101") or headers.get(b"sec-websocket-accept") != accept:
            if not self.ready.done():
                self.ready.set_exception(Failure(f"upgrade refused: {lines[0].decode(errors='replace')[:80]}"))
            return b""
        self.upgraded = True
        self.fast = self.error is None
        self.head = b""
        if not self.sio:
            self.ready.set_result(None)
        return rest

    def frames(self, data: bytes) -> None:
        """Parse whole frames from ``data`` (after what was left over) and hand each to :meth:`frame`."""
        if self.buf:
            data = self.buf + data
            self.buf = b""
        i, n = 0, len(data)
        while i < n and self.error is None:
            i = self.one_frame(data, i)
            if i < 0:
                return

    def one_frame(self, data: bytes, i: int) -> int:
        """Handle the frame at ``data[i:]``; return where the next one starts, or -1 when it is not complete yet."""
        n = len(data)
        if n - i < 2:
            return self.hold(data[i:])
        first, second = data[i], data[i + 1]
        length, start = second & 0x7F, i + 2
        if length == 126:
            if n - i < 4:
                return self.hold(data[i:])
            length, start = _U16.unpack_from(data, i + 2)[0], i + 4
        elif length == 127:
            if n - i < 10:
                return self.hold(data[i:])
            length, start = _U64.unpack_from(data, i + 2)[0], i + 10
        if second & 0x80:
            self.fail("a masked frame from the server")
            return n
        if start + length > n:
            return self.hold(data[i:])
        self.frame(first, data[start : start + length])
        return start + length

    def frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if first & 0x70:
            self.fail(f"a frame with RSV bits set: {first:#x}")
        elif opcode == 0x9:
            self.write(0xA, payload)
        elif opcode == 0xA:
            pass
        elif opcode == 0x8:
            if not self.closing:
                code = _U16.unpack(payload[:2])[0] if len(payload) >= 2 else 1005
                self.fail(f"the server closed a connection with {code}")
        elif opcode == 0x1 and first & 0x80:
            self.text(payload)
        else:
            self.fail(f"an unexpected frame: opcode {opcode}, FIN {first >> 7}")

    def text(self, payload: bytes) -> None:
        if not self.sio:
            self.message(payload)
        elif payload == b"2":  # Engine.IO ping: answer with a pong
            self.write(0x1, b"3")
        elif payload[:1] == b"0":  # Engine.IO open packet: connect to the default namespace
            self.write(0x1, b"40")
        elif payload[:2] == b"40":
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload[: len(SIO_SUB[0])] == SIO_SUB[0] and payload[-2:] == SIO_SUB[1]:
            self.message(payload[len(SIO_SUB[0]) : -2])
        else:
            self.fail(f"unexpected Socket.IO packet {payload[:40]!r}")

    def message(self, payload: bytes) -> None:
        self.fail(f"unexpected message {payload[:40]!r}")

    def close(self) -> None:
        """Start the close handshake."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.write(0x8, _U16.pack(1000))


class Subscriber(Connection):
    """Checks that it receives exactly the byte stream of every message sent, in order, and when each one came.

    The fast path: the bytes of a read are compared, in one C-level comparison, with the same stretch of
    ``run.stream``, the server frames of the messages sent (each holds its sequence number and send time). A read
    that differs (a probe, a ping, a Socket.IO control packet, or an error) goes through the frame parser, which
    names what went wrong: a lost message, one again or out of order, a corrupted one. The messages completed by a
    read arrived together: (receive time, first, end) is recorded per read while measuring, and latency is worked out
    for every delivery after the window, from the send times.
    """

    def __init__(self, run: Run, path: str) -> None:
        super().__init__(run, path)
        self.pos = 0  # bytes of run.stream received
        self.next = 0  # messages received = the sequence number expected next
        self.reads: list[tuple[int, int, int]] = []
        self.probed = False

    def data_received(self, data: bytes) -> None:
        if self.fast:
            pos = self.pos
            end = pos + len(data)
            run = self.run
            if run.stream[pos:end] == data:
                self.pos = end
                count = end // run.frame_size
                first = self.next
                if count != first:
                    self.next = count
                    if run.measuring:
                        self.reads.append((perf_counter_ns(), first, count))
                    run.moved(first, count)
                return
        elif self.error is not None:
            return  # stop counting at the first wrong delivery
        elif not self.upgraded:
            data = self.upgrade(data)
            if not data:
                return
        self.slow(data)

    def advance(self, count: int) -> None:
        first = self.next
        self.next = count
        run = self.run
        if run.measuring:
            self.reads.append((perf_counter_ns(), first, count))
        run.moved(first, count)

    def slow(self, data: bytes) -> None:
        """Parse frame by frame from the last frame boundary (whole messages are still compared with the stream)."""
        size, stream = self.run.frame_size, self.run.stream
        cut = self.pos % size
        if cut:  # the last read ended inside what began like the next message: parse again from its start
            self.pos -= cut
            data = bytes(stream[self.pos : self.pos + cut]) + data
        elif self.buf:
            data = self.buf + data
            self.buf = b""
        i, n = 0, len(data)
        try:
            while i < n and self.error is None:
                pos = self.pos
                chunk = data[i : i + size]
                if chunk == stream[pos : pos + len(chunk)]:
                    self.pos += len(chunk)  # a whole message, or the start of one (the next read decides)
                    i += len(chunk)
                    continue
                i = self.one_frame(data, i)
                if i < 0:
                    return
        finally:
            count = self.pos // size
            if count != self.next:
                self.advance(count)
            self.fast = not self.buf and self.error is None

    def message(self, payload: bytes) -> None:
        run = self.run
        expected = self.pos // run.frame_size
        if payload == PROBE:
            if expected:
                self.fail(f"a probe arrived after message {expected - 1}")
            self.probed = True
            return
        if expected < run.sent and run.wrap[0] + payload + run.wrap[1] == run.expected(expected):
            self.pos += run.frame_size  # the right message, framed differently (a longer length field): still counted
            return
        try:
            seq = int(payload[1:11]) if payload[:1] == b"m" else -1
        except ValueError:
            seq = -1
        if seq < 0:
            self.fail(f"unexpected message {payload[:40]!r}")
        elif seq > expected:
            self.fail(f"message {seq} arrived when {expected} was next (lost or out of order)")
        elif seq < expected:
            self.fail(f"message {seq} arrived again after {expected - 1} (a duplicate or out of order)")
        else:
            self.fail(f"message {seq} differs from what was sent: {payload[:80]!r}")


class Publisher(Connection):
    """Sends numbered, time-stamped messages; each is masked as it is sent (C ``apply_mask``), one write per batch."""

    def __init__(self, run: Run, path: str) -> None:
        super().__init__(run, path)
        self.prefix, self.suffix = SIO_PUB if self.sio else (b"", b"")

    def send(self, count: int) -> None:
        run = self.run
        now = perf_counter_ns()
        head, tail = run.wrap
        frames = []
        for _ in range(count):
            seq = len(run.stamps)
            payload = b"m%010d %019d " % (seq, now) + FILL
            run.stream += server_frame(head + payload + tail)
            run.stamps.append(now)
            run.at.append(0)
            frames.append(client_frame(0x1, self.prefix + payload + self.suffix, seq))
        assert self.transport is not None
        self.transport.write(b"".join(frames))

    def probe(self) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(0x1, self.prefix + PROBE + self.suffix))


# ---------------------------------------------------------------------------------------------------- connections


async def open_many(port: int, count: int, make: Callable[[], Connection], concurrency: int = 100, timeout: float = 60.0) -> list[Any]:
    """Open ``count`` connections to 127.0.0.1:``port``, at most ``concurrency`` at a time (the listen backlog is
    finite), each ready (upgraded; Socket.IO: connected) within 20 s."""
    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one() -> Connection | None:
        async with semaphore:
            try:
                _, protocol = await asyncio.wait_for(loop.create_connection(make, "127.0.0.1", port), 20)
                assert isinstance(protocol, Connection)
                await asyncio.wait_for(asyncio.shield(protocol.ready), 20)
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:120])
                return None
            return protocol

    return await gather_connections(one, count, timeout, errors, close_all)


async def close_all(connections: list[Connection], timeout: float = 5.0) -> None:
    """Close handshake on every connection; cut what has not closed within ``timeout``."""
    for c in connections:
        c.close()
    waits = [c.gone for c in connections if not c.gone.done()]
    if waits:
        await asyncio.wait(waits, timeout=timeout)
    for c in connections:
        if c.transport is not None and not c.gone.done():
            c.transport.abort()


def check(connections: list[Any]) -> None:
    for c in connections:
        if c.error is not None:
            raise Failure(c.error)
    lost = sum(1 for c in connections if c.lost)
    if lost:
        raise Failure(f"the server dropped {lost} connection{'s' if lost > 1 else ''}")


# ---------------------------------------------------------------------------------------------------- servers


@dataclass
class FanoutServer:
    key: str
    label: str
    argv: Callable[[int], list[str]]
    env: Callable[[int, str], dict[str, str]]  # port, Redis URL
    sio: bool = False
    redis: bool = False
    cpus: str = "0"  # taskset -c; "0,1": the generator is not pinned while this server runs
    wsgi_ws: bool = False

    def paths(self) -> tuple[str, str]:
        """The subscribers' and the publisher's request paths."""
        if self.sio:
            base = "/socket.io/?EIO=4&transport=websocket&role="
            return base + "sub", base + "pub"
        return "/sub", "/pub"


WSGI_WS_ROOT = [ROOT]  # --wsgi-ws-root: the checkout whose wsgi_ws and gunicorn.conf.py the wsgi-ws columns run
CONNECTIONS = "5000"


def _wsgi_ws_argv(port: int) -> list[str]:
    return [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--pythonpath", str(SERVERS_DIR), "fanout_wsgi_ws:app"]


def _wsgi_ws_env(workers: int, history: int = 0) -> Callable[[int, str], dict[str, str]]:
    def env(port: int, redis_url: str) -> dict[str, str]:
        values = {
            "WSGI_WS_BIND": f"127.0.0.1:{port}",
            "WSGI_WS_WORKERS": str(workers),
            "WSGI_WS_WORKER_CONNECTIONS": CONNECTIONS,
            "WSGI_WS_ACCESS_LOG": "/dev/null",
            "WSGI_WS_LOG_LEVEL": "warning",
            "WS_HUB_QUEUE_LIMIT": "100000",  # a subscriber far behind is measured as behind, not closed with 1013
            "WS_HUB_QUEUE_BYTES": "64MiB",  # the same bound in bytes (a hub without it ignores the variable, with a warning)
        }
        if workers > 1:
            values["WS_HUB_URL"] = redis_url
        if history:
            values["WS_HUB_HISTORY_SIZE"] = str(history)  # recoverable groups: every publish through the history script
        return values

    return env


def _socketio_argv(workers: int) -> Callable[[int], list[str]]:
    return lambda port: [
        *(PY, "-m", "gunicorn", "-k", "geventwebsocket.gunicorn.workers.GeventWebSocketWorker", "-w", str(workers)),
        *("--worker-connections", CONNECTIONS, "-b", f"127.0.0.1:{port}", "--no-control-socket", "--log-level", "warning"),
        *("--chdir", str(SERVERS_DIR), "fanout_socketio:app"),
    ]


def _script(name: str) -> Callable[[int], list[str]]:
    return lambda port: [PY, str(SERVERS_DIR / name), str(port)]


def _no_env(port: int, redis_url: str) -> dict[str, str]:
    return {}


SERVERS = [
    FanoutServer("wsgi-ws-memory", "wsgi-ws memory", _wsgi_ws_argv, _wsgi_ws_env(1), wsgi_ws=True),
    FanoutServer("wsgi-ws-redis", "wsgi-ws redis, 2 workers", _wsgi_ws_argv, _wsgi_ws_env(2), redis=True, cpus="0,1", wsgi_ws=True),
    FanoutServer(
        "wsgi-ws-redis-history",
        "wsgi-ws redis + history, 2 workers",
        _wsgi_ws_argv,
        _wsgi_ws_env(2, history=1000),
        redis=True,
        cpus="0,1",
        wsgi_ws=True,
    ),
    FanoutServer("websockets", "websockets 17.4 broadcast", _script("fanout_websockets.py"), _no_env),
    FanoutServer("flask-socketio", "Flask-SocketIO 5.7", _socketio_argv(1), _no_env, sio=True),
    FanoutServer(
        "flask-socketio-redis",
        "Flask-SocketIO 5.7 + redis, 2 workers",
        _socketio_argv(2),
        lambda port, url: {"BENCH_MESSAGE_QUEUE": url},
        sio=True,
        redis=True,
        cpus="0,1",
    ),
    FanoutServer("raw", "raw gevent limit", _script("fanout_raw_gevent.py"), _no_env),
]
#: The ratio columns: wsgi-ws memory over each of these (and wsgi-ws redis over Flask-SocketIO + redis).
RATIOS = [
    ("wsgi-ws-memory", "raw"),
    ("wsgi-ws-memory", "websockets"),
    ("wsgi-ws-memory", "flask-socketio"),
    ("wsgi-ws-redis", "flask-socketio-redis"),
    ("wsgi-ws-redis-history", "wsgi-ws-redis"),
]


class Redis:
    """A redis-server on a free loopback port with no persistence, for the Redis columns (and bench/recovery.py);
    :meth:`restart` brings it back empty on the same port; killed at the end."""

    def __init__(self, logdir: Path) -> None:
        self.port = bench_run.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.logdir = logdir
        self.start()

    def start(self) -> None:
        """Start it on its port, and return once it accepts connections."""
        binary = shutil.which("redis-server") or "redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (self.logdir / "redis.log").open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server is not listening after 20 s") from None
                time.sleep(0.05)

    def restart(self) -> None:
        """Stop it and start it again on the same port, without its data (as after a crash without persistence)."""
        self.stop()
        self.start()

    def cpu(self) -> float:
        return bench_run.tree_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def sockets_per_process(pid: int) -> dict[int, int]:
    """Open sockets of each process of the server's tree (how gunicorn spread the connections over its workers)."""
    counts = {}
    for p in bench_run.process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        n = 0
        for fd in fds:
            with contextlib.suppress(OSError):
                n += os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:")
        counts[p] = n
    return counts


# ---------------------------------------------------------------------------------------------------- scenarios


@dataclass
class Spec:
    key: str
    title: str
    subscribers: int
    rate: float | None  # messages/s offered, or None: keep ``depth`` messages in flight
    depth: int = 8


SCENARIOS = [
    Spec("s1", "(1) 1,000 subs, 100 msgs/s offered (100k deliveries/s)", 1000, 100.0),
    Spec("s2", "(2) 1,000 subs, 1,000 msgs/s offered (1M deliveries/s)", 1000, 1000.0),
    Spec("s3", "(3) saturation: 1,000 subs, 8 msgs in flight", 1000, None),
    Spec("s4", "(4) saturation: 100 subs, 8 msgs in flight", 100, None),
]


@dataclass
class Settings:
    quick: bool
    warmup: float = 1.0
    windows: tuple[float, float, float, float] = (10.0, 10.0, 10.0, 10.0)
    drain: float = 5.0  # seconds after the window for the last deliveries; what is still missing then is "behind"
    peer_drain: float = 5.0  # the same for the other servers (quick: short, since only wsgi-ws must deliver everything)
    only: tuple[str, ...] = ()  # --scenarios

    @classmethod
    def make(cls, quick: bool, window: float | None) -> Settings:
        settings = cls(quick, 0.2, (0.5, 0.25, 0.5, 0.5), 20.0, 2.0) if quick else cls(quick)
        if window is not None:
            settings.windows = (window,) * 4
        return settings


class Target:
    """A started server: its URLs and the CPU seconds of its process tree (plus redis-server's for the Redis columns)."""

    def __init__(self, server: FanoutServer, running: bench_run.Running, redis: Redis | None) -> None:
        self.server = server
        self.running = running
        self.redis = redis
        self.port = running.port
        self.sub_path, self.pub_path = server.paths()

    def cpu(self) -> float:
        return self.running.cpu() + (self.redis.cpu() if self.redis is not None else 0.0)

    async def settle(self, limit: float = 15.0) -> bool:
        """Wait until the server is idle (under 15% of a core for 0.25 s); False if it is still busy after ``limit``."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = self.cpu()
            await asyncio.sleep(0.25)
            if self.cpu() - before < 0.25 * 0.15:
                return True
        return False


async def pace(publisher: Publisher, rate: float) -> None:
    """Offer ``rate`` messages/s: send whatever is due (in one write), then sleep until the next one is."""
    start = time.perf_counter()
    sent = 0
    while True:
        due = int((time.perf_counter() - start) * rate) + 1
        if due > sent:
            publisher.send(due - sent)
            sent = due
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))


async def scenario(target: Target, spec: Spec, window: float, settings: Settings) -> dict[str, Any]:
    run = Run(spec.subscribers, target.server.sio)
    t_open = time.perf_counter()
    subs: list[Subscriber] = await open_many(target.port, spec.subscribers, lambda: Subscriber(run, target.sub_path))
    open_s = time.perf_counter() - t_open
    everyone: list[Connection] = list(subs)
    pacer: asyncio.Future[None] | None = None
    try:
        (publisher,) = await open_many(target.port, 1, lambda: Publisher(run, target.pub_path))
        everyone.append(publisher)
        run.publisher = publisher
        deadline = time.monotonic() + 20
        while not all(s.probed for s in subs):  # probes until every subscriber is in the group
            check(everyone)
            if time.monotonic() > deadline:
                raise Failure(f"{sum(not s.probed for s in subs)} of {len(subs)} subscribers got no probe within 20 s")
            publisher.probe()
            await asyncio.sleep(0.05)
        spread = sockets_per_process(target.running.proc.pid)
        if spec.rate is not None:
            pacer = asyncio.ensure_future(pace(publisher, spec.rate))
        else:
            run.refill = True
            publisher.send(spec.depth)
        await asyncio.sleep(settings.warmup)
        check(everyone)
        gc.collect()
        gc.disable()  # no collector pauses in the window (the per-frame path makes no cycles)
        run.measuring = True
        sent0, delivered0 = run.sent, sum(s.next for s in subs)
        redis0 = target.redis.cpu() if target.redis is not None else 0.0
        usage0, server0, t0 = resource.getrusage(resource.RUSAGE_SELF), target.cpu(), time.perf_counter()
        end = t0 + window
        while (left := end - time.perf_counter()) > 0:
            await asyncio.sleep(min(0.25, left))
            check(everyone)
        t1 = time.perf_counter()
        run.measuring = False
        counts = [s.next for s in subs]
        sent = run.sent
        elapsed = t1 - t0
        usage, server_cpu = resource.getrusage(resource.RUSAGE_SELF), (target.cpu() - server0) / elapsed
        redis_cpu = ((target.redis.cpu() - redis0) / elapsed) if target.redis is not None else None
        generator_user, generator_system = (usage.ru_utime - usage0.ru_utime) / elapsed, (usage.ru_stime - usage0.ru_stime) / elapsed
        run.refill = False
        if pacer is not None:
            pacer.cancel()
        sent_total = run.sent
        drain_deadline = time.monotonic() + (settings.drain if target.server.wsgi_ws else settings.peer_drain)
        while any(s.next < sent_total for s in subs) and time.monotonic() < drain_deadline:
            check(everyone)
            await asyncio.sleep(0.02)
        drain_s = time.perf_counter() - t1
        check(everyone)
        missing = sum(sent_total - s.next for s in subs)
        deliveries = sum(counts) - delivered0
        latencies = run.latencies(subs)
        reads = sum(len(s.reads) for s in subs)
        return {
            "subscribers": spec.subscribers,
            "deliveries_per_s": deliveries / elapsed,
            "offered_per_s": spec.rate,
            "offered_msgs_per_s": (sent - sent0) / elapsed,
            "p50_ms": latencies.quantile(0.5),
            "p99_ms": latencies.quantile(0.99),
            "max_ms": latencies.quantile(1.0),
            "latencies": len(latencies),
            "deliveries_per_read": len(latencies) / reads if reads else None,  # reads that completed a message
            "server_cpu": server_cpu,
            "redis_cpu": redis_cpu,  # of server_cpu: redis-server's share (cores)
            "loadgen_cpu": generator_user + generator_system,
            "loadgen_user": generator_user,
            "loadgen_system": generator_system,
            "us_per_delivery": 1e6 * server_cpu * elapsed / deliveries if deliveries else None,
            "sent_at_cutoff": sent,
            "received_min": min(counts),
            "received_median": statistics.median(counts),
            "received_max": max(counts),
            "behind_at_cutoff": sent - min(counts),
            "sent": sent_total,
            "missing_after_drain": missing,
            "complete": missing == 0,
            "drain_s": drain_s,
            "verified": sum(s.next for s in subs),
            "open_s": open_s,
            "sockets_per_process": {str(k): v for k, v in spread.items()},
            "window_s": elapsed,
        }
    finally:
        gc.enable()
        if pacer is not None:
            pacer.cancel()
        run.refill = False
        await close_all(everyone)


def log_result(name: str, result: dict[str, Any], took: float) -> None:
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items() if k != "sockets_per_process"}
    log(f"    {name} ({took:.1f} s): {shown}")


async def attempt(results: dict[str, Any], name: str, coro: Coroutine[Any, Any, dict[str, Any]], timeout: float) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = await asyncio.wait_for(coro, timeout)
    except Failure as error:
        results[name] = {"error": str(error)}
    except TimeoutError:
        results[name] = {"error": f"timeout after {timeout:.0f} s"}
    except Exception as error:
        results[name] = {"error": f"{type(error).__name__}: {error}"[:160]}
    log_result(name, results[name], time.perf_counter() - t0)


async def bench_server(server: FanoutServer, settings: Settings, logdir: Path, pin: bool, redis: Redis | None) -> dict[str, Any]:
    results: dict[str, Any] = {"restarts": 0}
    log(f"== {server.label}")
    if pin:
        os.sched_setaffinity(0, {1} if server.cpus == "0" else {0, 1})
    spec = bench_run.Server(
        server.key,
        server.label,
        (lambda port: ["taskset", "-c", server.cpus, *server.argv(port)]) if pin else server.argv,
        lambda port, ping: server.env(port, redis.url if redis is not None else ""),
        cwd=WSGI_WS_ROOT[0] if server.wsgi_ws else ROOT,
    )

    async def start() -> Target:
        running = bench_run.Running(spec, None, logdir, pin=False)  # taskset is in argv: its CPU list differs per server
        target = Target(server, running, redis if server.redis else None)
        try:
            running.wait_ready()
        except Exception:
            running.stop()
            raise
        await target.settle()  # every worker booted (the master listens first), so accept spreads the subscribers
        return target

    target: Target | None = None
    try:
        target = await start()
        results["up"] = True
        generator = "CPU 1" if server.cpus == "0" else "not pinned"
        results["pinning"] = f"server taskset -c {server.cpus}, generator {generator}" if pin else "none"
        todo = [
            (spec_, window)
            for spec_, window in zip(SCENARIOS, settings.windows, strict=True)
            if spec_.key in settings.only or not settings.only
        ]
        for spec_, window in todo:
            budget = 90 + settings.warmup + window + max(settings.drain, settings.peer_drain)
            await attempt(results, spec_.key, scenario(target, spec_, window, settings), budget)
            if target.running.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {target.running.proc.returncode}: {target.running.log_tail()}")
            idle = await target.settle()
            if (not idle or not results[spec_.key].get("complete")) and spec_ is not todo[-1][0]:
                # a server that fell behind may still be sending the old publisher's backlog (to the next scenario's
                # subscribers too): the next scenario gets a fresh one
                log(f"    restarting {server.key}: {'still busy' if not idle else 'it fell behind or failed'}")
                target.running.stop()
                target = None
                target = await start()
                results["restarts"] += 1
    except Exception as error:
        results["up"] = False
        results["error"] = f"{type(error).__name__}: {error}"[:300]
        log(f"    server failed: {results['error']}")
    finally:
        if target is not None:
            target.running.stop()
        if pin:
            os.sched_setaffinity(0, {1})
    return results


# ---------------------------------------------------------------------------------------------------- the table


def _maybe(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _cpu(r: dict[str, Any]) -> str:
    return f"{100 * r['server_cpu']:.0f}% / {100 * r['loadgen_cpu']:.0f}%"


def _fairness(r: dict[str, Any]) -> str:
    return f"{r['received_min']:,} / {r['received_median']:,.0f} / {r['received_max']:,} of {r['sent_at_cutoff']:,}"


def _status(r: dict[str, Any]) -> str:
    rate = r["offered_per_s"]
    behind = r["behind_at_cutoff"]
    if r["complete"] and (rate is None or behind <= max(2, rate * 0.1)):
        text = "kept up" if rate is not None else "all delivered"
    else:
        lag = f"slowest sub {behind:,} msgs ({behind / rate:.1f} s) behind at cut-off" if rate else f"slowest sub {behind:,} msgs behind"
        if r["complete"]:
            text = f"behind: {lag}, all in {r['drain_s']:.1f} s more"
        else:
            text = f"behind: {lag}, {r['missing_after_drain']:,} deliveries still missing {r['drain_s']:.0f} s later"
    if r["loadgen_cpu"] >= 0.9:
        text += f"; generator at {100 * r['loadgen_cpu']:.0f}%: near its limit"
    return text


#: row suffix, title, value for the ratio (None: no ratio), text of the cell
ROWS: list[tuple[str, str, str | None, Callable[[dict[str, Any]], str]]] = [
    ("rate", "deliveries/s", "deliveries_per_s", lambda r: f"{r['deliveries_per_s']:,.0f}"),
    ("p50", "latency p50, ms", "p50_ms", lambda r: _maybe(r["p50_ms"], "{:.1f}")),
    ("p99", "latency p99, ms", "p99_ms", lambda r: _maybe(r["p99_ms"], "{:.1f}")),
    ("cpu", "CPU server / generator", None, _cpu),
    ("us", "server CPU per delivery, us", "us_per_delivery", lambda r: _maybe(r["us_per_delivery"], "{:.2f}")),
    ("fair", "per sub at cut-off: min / median / max", None, _fairness),
    ("status", "status", None, _status),
]


def table(all_results: dict[str, dict[str, Any]]) -> str:
    servers = [s for s in SERVERS if s.key in all_results]
    ratios = [(a, b) for a, b in RATIOS if a in all_results and b in all_results]
    label = {s.key: s.label for s in SERVERS}
    head = ["scenario", *(s.label for s in servers), *(f"{label[a].split(',')[0]} / {label[b].split(',')[0]}" for a, b in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in SCENARIOS:
        for _, title, ratio_key, text in ROWS:
            cells = []
            for s in servers:
                r = all_results[s.key]
                outcome = r.get(spec.key)
                if not r.get("up") and outcome is None:
                    cells.append("server failed")
                elif outcome is None:
                    cells.append("not run")
                elif "error" in outcome:
                    cells.append("FAIL: " + outcome["error"].replace("|", "/")[:80] if title == "status" else "-")
                else:
                    cells.append(text(outcome))
            ratio_cells = []
            for a, b in ratios:
                mine, theirs = all_results[a].get(spec.key, {}), all_results[b].get(spec.key, {})
                x, y = (mine.get(ratio_key), theirs.get(ratio_key)) if ratio_key else (None, None)
                ratio_cells.append(f"{x / y:.2f}x" if isinstance(x, int | float) and isinstance(y, int | float) and y else "")
            lines.append("| " + " | ".join([f"{spec.title}: {title}", *cells, *ratio_cells]) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main


def available(server: FanoutServer) -> str | None:
    """Why the server cannot run here, or None."""
    if server.redis and shutil.which("redis-server") is None:
        return "no redis-server on PATH (Debian's redis-server package)"
    module = "flask_socketio" if server.sio else None
    if module is not None:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -r requirements-bench.txt)"
    return None


async def main_async(servers: list[FanoutServer], settings: Settings, pin: bool) -> dict[str, dict[str, Any]]:
    logdir = Path(tempfile.mkdtemp(prefix="wsgi-ws-fanout-"))
    log(f"server logs in {logdir}")
    redis = Redis(logdir) if any(s.redis for s in servers) else None
    all_results: dict[str, dict[str, Any]] = {}
    try:
        for server in servers:
            all_results[server.key] = await bench_server(server, settings, logdir, pin, redis)
    finally:
        if redis is not None:
            redis.stop()
    return all_results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: short windows, every delivery verified, no timing claims")
    keys = [s.key for s in SERVERS]
    parser.add_argument("--servers", nargs="*", choices=keys, help="only these (default: all; --quick: all but the Redis ones)")
    parser.add_argument("--json", type=Path, help="also write every raw number to this file")
    parser.add_argument("--scenarios", nargs="*", choices=[s.key for s in SCENARIOS], help="only these scenarios")
    parser.add_argument("--window", type=float, help="seconds of every scenario's measured window (default: 10, quick: 0.25-0.5)")
    parser.add_argument("--wsgi-ws-root", type=Path, default=ROOT, help="the checkout whose wsgi_ws the wsgi-ws columns run")
    args = parser.parse_args()
    WSGI_WS_ROOT[0] = args.wsgi_ws_root.resolve()
    settings = Settings.make(args.quick, args.window)
    settings.only = tuple(args.scenarios or ())

    servers, skipped = [], {}
    for server in SERVERS:
        if args.servers and server.key not in args.servers:
            continue
        if args.quick and not args.servers and server.redis:
            continue  # quick runs only what requirements*.txt install, unless told (CI's test names the Redis one)
        reason = available(server)
        if reason is None:
            servers.append(server)
        else:
            skipped[server.key] = reason
            log(f"skipping {server.key}: {reason}")

    bench_run.raise_open_files()
    pin = bench_run.pin_load_generator()

    started = time.perf_counter()
    all_results = uvloop.run(main_async(servers, settings, pin))
    elapsed = time.perf_counter() - started

    mode = "quick (smoke; the numbers are not measurements)" if args.quick else "full"
    pinning = "servers on CPU 0 (taskset -c 0), generator on CPU 1" if pin else "nothing pinned"
    if pin and any(s.cpus != "0" for s in servers):
        pinning += "; the 2-worker Redis servers on CPUs 0,1 with redis-server and the generator not pinned: they share both cores"
    print(f"\n{bench_run.machine()}; {pinning}; {time.strftime('%Y-%m-%d')}; mode: {mode}; took {elapsed:.0f} s\n")
    print(table(all_results))
    for server in servers:
        outcome = all_results.get(server.key, {}).get("s1", {})
        sockets = sorted((n for n in outcome.get("sockets_per_process", {}).values() if n > 1), reverse=True)
        if len(sockets) > 1:
            spread = " / ".join(map(str, sockets))
            print(f"\n{server.label}: open sockets per process in (1), where accept spread the 1,000 subscribers: {spread}")
    for key, reason in skipped.items():
        print(f"\nskipped {key}: {reason}")
    if args.json:
        document = {"machine": bench_run.machine(), "mode": mode, "pinning": pinning, "elapsed_s": elapsed, "results": all_results}
        args.json.write_text(json.dumps({**document, "skipped": skipped}, indent=1))

    failed = []
    for key, results in all_results.items():
        wsgi_ws = next(s for s in SERVERS if s.key == key).wsgi_ws
        if not wsgi_ws:
            continue
        if not results.get("up"):
            failed.append(f"{key} did not start: {results.get('error')}")
        for spec in SCENARIOS:
            outcome = results.get(spec.key)
            if outcome is None:
                continue
            if "error" in outcome:
                failed.append(f"{key} {spec.key}: {outcome['error']}")
            elif args.quick and not outcome["complete"]:
                failed.append(f"{key} {spec.key}: {outcome['missing_after_drain']} deliveries missing after the drain")
    failed += [f"{key} requested but skipped: {reason}" for key, reason in skipped.items() if args.servers and key.startswith("wsgi-ws")]
    if failed:
        log("failed: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
