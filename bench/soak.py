"""Soak: 10,000 well-behaved WebSockets with keep-alive pings for 10 minutes, 1% more misbehaving, on two workers.

    python bench/soak.py                          # the full soak: 10,000 clients for 10 minutes (about 12 in all)
    python bench/soak.py --quick                  # smoke mode (tests/test_bench_soak_smoke.py): 300 clients, 40 s
    python bench/soak.py --clients 2000 --minutes 2 --json out.json --logs /tmp/soak-logs

One gunicorn (gunicorn.conf.py, bench/servers/soak_app.py, two workers) on 127.0.0.1, with keep-alive pings and the
limits the misbehaving clients run into. The well-behaved clients (picows on uvloop) stay connected for the whole
run; each sends a numbered message every few seconds (text or binary, 20-2,000 bytes) and checks that its echo comes
back exact and in order, and answers every ping. The misbehaving ones (raw sockets on the same loop) cycle through
the hostile inputs of issue 16, each reconnecting when it is done, and count the answers they got. Every few
seconds the generator samples each worker: RSS and open file descriptors from /proc, live greenlets and open
WebSockets from the worker itself (the app's probe). After a warm-up, RSS must stay flat; once every client has
left, descriptors and greenlets must be back at the idle baseline.

Exit status: 1 when a goal was missed (with --quick: only when a well-behaved message was lost, corrupted or its
connection closed, or the run could not run; the other goals need the full run's length); 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402  (free ports, process trees, open-file limit, log)
from frames import masked_frame  # noqa: E402

PY = sys.executable
log = bench_run.log

# The server's settings (WS_* for the WebSocket options): pings on, and the limits the misbehaving clients exercise.
KEEP_ALIVE_INTERVAL = 5.0
KEEP_ALIVE_TIMEOUT = 10.0
MAX_MESSAGE_SIZE = 64 * 1024
MAX_MESSAGES_PER_SECOND = 20
SEND_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 2.0
WORKER_CONNECTIONS = 12000  # per worker: gunicorn's accept may hand most of the 10,000 to one of them
SERVER_ENV = {
    "WSGI_WS_WORKER_CONNECTIONS": str(WORKER_CONNECTIONS),
    "WSGI_WS_ACCESS_LOG": "/dev/null",
    "WSGI_WS_LOG_LEVEL": "warning",
    "WSGI_WS_GRACEFUL_TIMEOUT": "10",
    "WS_KEEP_ALIVE_INTERVAL": str(KEEP_ALIVE_INTERVAL),
    "WS_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE_TIMEOUT),
    "WS_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_SIZE),
    "WS_MAX_MESSAGES_PER_SECOND": str(MAX_MESSAGES_PER_SECOND),
    "WS_SEND_TIMEOUT": str(SEND_TIMEOUT),
    "WS_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
}
#: Goals: RSS growth per worker from the end of warm-up to the end of the run.
RSS_GROWTH_GOAL_PCT = 5.0

TEXT, BINARY, PING, PONG, CLOSE, CONTINUATION = (
    WSMsgType.TEXT,
    WSMsgType.BINARY,
    WSMsgType.PING,
    WSMsgType.PONG,
    WSMsgType.CLOSE,
    WSMsgType.CONTINUATION,
)


# ---------------------------------------------------------------------------------------------------- the server


class Server:
    """gunicorn with the soak app and ``workers`` workers, each with its probe socket; always stopped at the end."""

    def __init__(self, logdir: Path, probe_dir: Path, workers: int) -> None:
        self.port = bench_run.free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = logdir / "server.log"
        self.probe_dir = probe_dir
        self.expected_workers = workers
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_", "BENCH_", "SOAK_"))}
        env.update(SERVER_ENV, WSGI_WS_BIND=f"127.0.0.1:{self.port}", WSGI_WS_WORKERS=str(workers), SOAK_PROBE_DIR=str(probe_dir))
        argv = [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--pythonpath", str(BENCH / "servers"), "soak_app:app"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-800:]}")
            pids = self.workers()
            if len(pids) == workers and all(self.probe_path(pid).exists() for pid in pids):
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn is not serving {workers} workers after 30 s: {self.log.read_text(errors='replace')[-800:]}")
            time.sleep(0.05)

    def workers(self) -> list[int]:
        return sorted(pid for pid in bench_run.process_tree(self.proc.pid) if pid != self.proc.pid)

    def probe_path(self, pid: int) -> Path:
        return self.probe_dir / f"{pid}.sock"

    async def probe(self, pid: int) -> dict[str, Any]:
        """Ask worker ``pid`` itself: its live greenlets, open WebSockets and totals (bench/servers/soak_app.py)."""
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.probe_path(pid))), 10)
        try:
            answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 30))
            return answer
        finally:
            writer.close()

    async def sample(self, at: float, phase: str) -> dict[str, Any]:
        """Every worker's RSS, open descriptors and CPU from /proc (read first), then its probe's answer."""
        workers: dict[str, Any] = {}
        for pid in self.workers():
            try:
                entry: dict[str, Any] = {"rss_kb": rss_kb(pid), "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu_seconds(pid)}
            except OSError:
                continue  # gone between the listing and the read: a worker restarted (the pids tell)
            started = time.perf_counter()
            try:
                entry.update(await self.probe(pid))
            except (OSError, TimeoutError, ValueError) as error:
                entry["probe_error"] = repr(error)
            entry["probe_ms"] = round(1000 * (time.perf_counter() - started), 1)
            workers[str(pid)] = entry
        return {"t": round(at, 1), "phase": phase, "workers": workers}

    def tracebacks(self) -> tuple[int, str]:
        """How many tracebacks the server logged, and the end of the first one."""
        text = self.log.read_text(errors="replace")
        count = text.count("Traceback (most recent call last)")
        if not count:
            return 0, ""
        start = text.index("Traceback (most recent call last)")
        return count, text[start : start + 3000]

    def stop(self) -> None:
        bench_run.stop_group(self.proc, 20)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / bench_run.TICK


# ---------------------------------------------------------------------------------------------------- well-behaved clients

FILLER = bytes(random.Random(16).choice(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(4096))


@dataclass
class Tally:
    """What the well-behaved clients sent and got back, together."""

    clients: int = 0
    connected: int = 0
    connect_errors: list[str] = field(default_factory=list)
    sent: int = 0
    echoed: int = 0
    lost: int = 0
    corrupted: int = 0
    unexpected_closes: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    pings: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))


class Steady(WSListener):  # type: ignore[misc]  # picows is compiled, without stubs
    """A well-behaved client: a numbered message every ``interval`` seconds, each echo checked exact and in order;
    every ping answered (by this listener, so they are counted)."""

    def __init__(self, tally: Tally, number: int, interval: tuple[float, float]) -> None:
        super().__init__()
        self.tally, self.number, self.interval = tally, number, interval
        self.transport: WSTransport | None = None
        self.count = 0
        self.outstanding: deque[tuple[WSMsgType, bytes, float]] = deque()
        self.pinged = 0
        self.leaving = False
        self.close_code: int | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.parts: list[bytes] = []
        self.parts_kind = TEXT
        self.random = random.Random(number)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        """The first message within one interval (so the clients' messages are spread out), then one every interval."""
        self.timer = asyncio.get_running_loop().call_later(self.random.uniform(0.5, self.interval[1]), self.tick)

    def tick(self) -> None:
        transport = self.transport
        if self.leaving or transport is None or transport.is_disconnected:
            return
        self.send()
        self.timer = asyncio.get_running_loop().call_later(self.random.uniform(*self.interval), self.tick)

    def send(self) -> None:
        assert self.transport is not None
        n = self.count
        self.count += 1
        size = self.random.randint(20, 2000)
        start = self.random.randrange(len(FILLER) - size)
        payload = f"{self.number}:{n}:".encode() + FILLER[start : start + size]
        kind = BINARY if n % 4 == 3 else TEXT
        self.outstanding.append((kind, payload, time.perf_counter()))
        self.transport.send(kind, payload)
        self.tally.sent += 1

    def stop(self) -> None:
        self.leaving = True
        if self.timer is not None:
            self.timer.cancel()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == PING:
            self.pinged += 1
            self.tally.pings += 1
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if kind == CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind == PONG:
            return
        if not frame.fin or kind == CONTINUATION or self.parts:
            self.parts.append(frame.get_payload_as_bytes())
            if kind != CONTINUATION:
                self.parts_kind = kind
            if not frame.fin:
                return
            kind, data = self.parts_kind, b"".join(self.parts)
            self.parts = []
        else:
            data = frame.get_payload_as_bytes()
        self.check(kind, data)

    def check(self, kind: WSMsgType, data: bytes) -> None:
        tally, outstanding = self.tally, self.outstanding
        for index, (sent_kind, payload, at) in enumerate(outstanding):
            if payload == data and sent_kind == kind:
                tally.lost += index  # the ones before it never came back
                for _ in range(index + 1):
                    outstanding.popleft()
                tally.echoed += 1
                tally.latencies.append(time.perf_counter() - at)
                return
        tally.corrupted += 1  # no message sent looks like it (or it came back as the other type)
        if outstanding:
            outstanding.popleft()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.leaving:
            self.tally.unexpected_closes += 1
            self.tally.close_codes[str(self.close_code) if self.close_code is not None else "no close frame"] += 1


async def open_steady(url: str, count: int, tally: Tally, interval: tuple[float, float], concurrency: int = 100) -> list[Steady]:
    """Open ``count`` well-behaved clients, ``concurrency`` handshakes at a time (a failed one is retried twice)."""
    semaphore = asyncio.Semaphore(concurrency)
    opened: list[Steady] = []
    tally.clients += count

    async def one(number: int) -> None:
        async with semaphore:
            for attempt in range(3):
                try:
                    _, listener = await ws_connect(
                        functools.partial(Steady, tally, number, interval),
                        url,
                        enable_auto_pong=False,
                        websocket_handshake_timeout=30,
                    )
                except Exception as error:
                    if attempt == 2:
                        tally.connect_errors.append(f"{type(error).__name__}: {error}"[:160])
                    await asyncio.sleep(0.5)
                    continue
                assert isinstance(listener, Steady)
                opened.append(listener)
                tally.connected += 1
                return

    await asyncio.gather(*(one(number) for number in range(count)))
    return opened


async def leave(clients: list[Steady], timeout: float = 15.0) -> None:
    """Every client sends a close frame and waits for the server's; whatever has not closed in ``timeout`` is cut."""
    for client in clients:
        client.stop()
        if client.transport is not None and not client.transport.is_disconnected:
            client.transport.send_close(WSCloseCode.OK)
    waits = [asyncio.ensure_future(c.transport.wait_disconnected()) for c in clients if c.transport is not None]
    if waits:
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
    for client in clients:
        if client.transport is not None and not client.transport.is_disconnected:
            client.transport.disconnect(graceful=False)


async def drain_echoes(clients: list[Steady], timeout: float) -> None:
    """Wait (at most ``timeout`` s) until every message sent has come back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(c.outstanding for c in clients if not c.transport.is_disconnected):
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------------- misbehaving clients


class Frames:
    """Server frames (unmasked) parsed as they arrive; data frames counted (their payloads kept with ``keep_data``)."""

    def __init__(self, keep_data: bool = True) -> None:
        self.keep_data = keep_data
        self.pending = bytearray()
        self.skip = 0  # bytes of a data frame's payload still to skip
        self.data: list[tuple[int, bytes]] = []
        self.data_frames = 0
        self.pings = self.pongs = 0
        self.close: tuple[int | None, bytes] | None = None
        self.masked = False  # a server frame with the mask bit: a protocol error of the server's

    def feed(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        if self.skip:
            taken = min(self.skip, len(view))
            self.skip -= taken
            view = view[taken:]
        if not len(view):
            return
        p = self.pending
        p += view
        pos, end = 0, len(p)
        while end - pos >= 2:
            opcode, second = p[pos] & 0x0F, p[pos + 1]
            self.masked |= bool(second & 0x80)
            length, head = second & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(p[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(p[pos + 2 : pos + 10], "big"), 10
            start = pos + head
            if opcode < 8 and not self.keep_data:
                self.data_frames += 1
                if end - start < length:
                    self.skip = length - (end - start)
                    pos = end
                    break
                pos = start + length
                continue
            if end - start < length:
                break
            payload = bytes(p[start : start + length])
            pos = start + length
            if opcode == 8:
                self.close = (int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None, payload[2:])
            elif opcode == 9:
                self.pings += 1
            elif opcode == 10:
                self.pongs += 1
            else:
                self.data_frames += 1
                self.data.append((opcode, payload))
        del p[:pos]


class Raw(asyncio.Protocol):
    """One misbehaving connection: bytes as they come (``head`` until the upgrade, then ``frames``) and how it ended."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.frames: Frames | None = None
        self.received = 0
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.ended_at: float | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport does not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.frames is not None:
            self.frames.feed(data)
        else:
            self.head += data
        self.arrived.set()

    def eof_received(self) -> bool:
        self._end("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end("eof" if exc is None else "reset" if isinstance(exc, ConnectionResetError) else type(exc).__name__)

    def _end(self, how: str) -> None:
        if not self.ended.done():
            self.ended.set_result(how)
            self.ended_at = time.monotonic()
        self.arrived.set()

    async def until(self, ready: Callable[[], object], timeout: float) -> bool:
        """Wait until ``ready()`` or the connection's end, at most ``timeout`` s; whether ``ready()`` came true."""
        deadline = time.monotonic() + timeout
        while not ready():
            remaining = deadline - time.monotonic()
            if self.ended.done() or remaining <= 0:
                return bool(ready())
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return True

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.ended.done() and not self.transport.is_closing():
            self.transport.write(data)

    def reset(self) -> None:
        """End the connection with a TCP reset (SO_LINGER 0), as a crashed client or a middlebox would."""
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


async def connect_raw(port: int, rcvbuf: int | None = None, sndbuf: int | None = None) -> Raw:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # set before connect: the window stays that small
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
        _, protocol = await loop.create_connection(lambda: Raw(sock), sock=sock)
    except BaseException:
        sock.close()
        raise
    assert isinstance(protocol, Raw)
    return protocol


def upgrade_request(port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Refused(Exception):
    """The upgrade was not answered with 101."""


async def open_ws(port: int, path: str, *, rcvbuf: int | None = None, sndbuf: int | None = None, keep_data: bool = True) -> Raw:
    """A raw connection through the upgrade: its frames from then on go to ``raw.frames``."""
    raw = await connect_raw(port, rcvbuf, sndbuf)
    try:
        raw.write(upgrade_request(port, path))
        if not await raw.until(lambda: b"\r\n\r\n" in raw.head, 10):
            raise Refused(f"no complete answer to the upgrade ({raw.ended.result() if raw.ended.done() else 'timeout'})")
        head, _, rest = bytes(raw.head).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise Refused(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        raw.frames = Frames(keep_data)
        raw.head.clear()
        raw.frames.feed(rest)
    except BaseException:
        raw.abort()
        raise
    return raw


def close_label(raw: Raw) -> str:
    assert raw.frames is not None and raw.frames.close is not None
    return f"close {raw.frames.close[0]}"


async def closing_answer(raw: Raw, timeout: float, reply: bool = True) -> str:
    """Wait for the server's close frame: ``close <code>``, ``cut`` (TCP ended without one) or no answer."""
    assert raw.frames is not None
    frames = raw.frames
    if await raw.until(lambda: frames.close is not None, timeout):
        if reply:
            code = frames.close[0] if frames.close and frames.close[0] is not None else 1000
            raw.write(masked_frame(0x8, struct.pack("!H", code)))
        if raw.transport is not None:
            raw.transport.close()
        return close_label(raw)
    if raw.ended.done():
        return "cut"
    return f"no answer in {timeout:.0f} s"


#: A client that never reads is left alone this long (the server should give up on it after send_timeout), then reads.
HOLD = SEND_TIMEOUT + 4.0
#: Seconds it then reads what is left, to see how the connection ended.
DRAIN = 3.0
FLOOD_PAYLOAD = b"f" * 125
FLOOD_BATCH = masked_frame(0x9, FLOOD_PAYLOAD) * 50  # 50 pings of 125 bytes every 10 ms: up to 5,000 a second
OVERSIZE = masked_frame(0x2, b"\x00" * (MAX_MESSAGE_SIZE + 1))
OVER_RATE = b"".join(masked_frame(0x1, f"r{n}".encode()) for n in range(2 * MAX_MESSAGES_PER_SECOND))
BAD_CLOSE = masked_frame(0x8, b"\x03\xe8\xff\xfe")  # 1000, then a reason that is not UTF-8
BAD_HEADS = [
    {"X-Big": "a" * 100_000},
    {f"X-Header-{n}": "v" for n in range(5_000)},
    {"Sec-WebSocket-Extensions": "permessage-deflate; " + "; ".join(f"p{n}=1" for n in range(10_000))},
]


async def after_hold(raw: Raw) -> str:
    """A client that did not read for HOLD s reads now for up to DRAIN s: ``cut`` if the server had given up on it."""
    assert raw.frames is not None and raw.transport is not None
    frames = raw.frames
    if not raw.ended.done():
        raw.transport.resume_reading()
        await raw.until(lambda: frames.close is not None, DRAIN)
    if frames.close is not None:
        return close_label(raw)
    if raw.ended.done():
        return "cut"
    return ""  # still open: the caller says how


async def ping_flood(port: int, episode: int, detail: dict[str, Any]) -> str:
    """Pings of 125 bytes, up to 5,000 a second, and never a read: the pongs cannot go out."""
    raw = await open_ws(port, "/ws", rcvbuf=8192, sndbuf=65536, keep_data=False)
    try:
        assert raw.transport is not None and raw.frames is not None
        raw.transport.pause_reading()
        pings = 0
        deadline = time.monotonic() + HOLD
        while not raw.ended.done() and time.monotonic() < deadline:
            if raw.transport.get_write_buffer_size() < 65536:
                raw.write(FLOOD_BATCH)
                pings += 50
            await asyncio.sleep(0.01)
        answer = await after_hold(raw)
        detail["pings"] = pings
        detail["pongs"] = raw.frames.pongs
        if answer:
            return answer
        return "open, a pong per ping" if raw.frames.pongs * 2 >= pings else "open, pongs coalesced"
    finally:
        raw.reset()


async def never_reads(port: int, episode: int, detail: dict[str, Any]) -> str:
    """Connects to /firehose, which sends without end, and never reads."""
    raw = await open_ws(port, "/firehose", rcvbuf=8192, keep_data=False)
    try:
        assert raw.transport is not None
        raw.transport.pause_reading()
        await raw.until(lambda: False, HOLD)
        return await after_hold(raw) or "still sending"
    finally:
        raw.reset()


async def bad_close_reason(port: int, episode: int, detail: dict[str, Any]) -> str:
    raw = await open_ws(port, "/ws")
    try:
        raw.write(BAD_CLOSE)
        return await closing_answer(raw, 10, reply=False)
    finally:
        raw.abort()


async def oversize(port: int, episode: int, detail: dict[str, Any]) -> str:
    raw = await open_ws(port, "/ws")
    try:
        raw.write(OVERSIZE)
        return await closing_answer(raw, 10)
    finally:
        raw.abort()


async def over_rate(port: int, episode: int, detail: dict[str, Any]) -> str:
    raw = await open_ws(port, "/ws")
    try:
        raw.write(OVER_RATE)
        answer = await closing_answer(raw, 10)
        assert raw.frames is not None
        detail["echoed"] = raw.frames.data_frames
        return answer
    finally:
        raw.abort()


async def bad_head(port: int, episode: int, detail: dict[str, Any]) -> str:
    """A 100 KB header, 5,000 headers, or an extensions offer of 10,000 parameters (in turn)."""
    raw = await connect_raw(port)
    try:
        raw.write(upgrade_request(port, "/ws", BAD_HEADS[episode % len(BAD_HEADS)]))
        await raw.until(lambda: b"\r\n" in raw.head, 10)
        if raw.head.startswith(b"HTTP/"):
            return "http " + raw.head.split(b" ", 2)[1].decode(errors="replace")
        if raw.ended.done():
            return "reset" if raw.ended.result() == "reset" else "closed without an answer"
        return "no answer in 10 s"
    finally:
        raw.abort()


async def slow_head(port: int, episode: int, detail: dict[str, Any]) -> str:
    """A request head that never completes: nothing at all, or a header line every 0.5 s (in turn)."""
    raw = await connect_raw(port)
    try:
        started = time.monotonic()
        trickle = episode % 2 == 1
        if trickle:
            raw.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        line = 0
        while time.monotonic() - started < 10 and not raw.head and not raw.ended.done():
            await raw.until(lambda: raw.head, 0.5)
            if trickle and not raw.head:
                raw.write(f"X-Slow-{line}: 1\r\n".encode())
                line += 1
        if raw.head:
            return "http " + raw.head.split(b" ", 2)[1].decode(errors="replace") if raw.head.startswith(b"HTTP/") else "garbage"
        if raw.ended.done() and raw.ended_at is not None:
            took = detail["closed_after_s"] = round(raw.ended_at - started, 2)
            if HANDSHAKE_TIMEOUT - 0.25 <= took <= HANDSHAKE_TIMEOUT + 1.5:
                return "closed at the deadline"
            return f"closed after {took:.0f} s"
        return "open after 10 s"
    finally:
        raw.abort()


async def reset_mid_message(port: int, episode: int, detail: dict[str, Any]) -> str:
    """A TCP reset halfway through a message of ours (/ws), or while the server is sending (/firehose), in turn."""
    if episode % 2 == 0:
        raw = await open_ws(port, "/ws")
        raw.write(masked_frame(0x2, os.urandom(1000))[:500])
        await asyncio.sleep(0.05)
    else:
        raw = await open_ws(port, "/firehose", keep_data=False)
        await raw.until(lambda: raw.received >= 65536, 5)
    raw.reset()
    return "reset sent"


async def vanish(port: int, episode: int, detail: dict[str, Any]) -> str:
    """Connect and leave at once (a FIN, no request), or leave right after the upgrade without a close frame, in turn."""
    raw = await (connect_raw(port) if episode % 2 == 0 else open_ws(port, "/ws"))
    assert raw.transport is not None
    raw.transport.close()
    return "vanished"


@dataclass(frozen=True)
class Kind:
    name: str
    what: str
    expected: tuple[str, ...]
    run: Callable[[int, int, dict[str, Any]], Awaitable[str]]
    prime: bool = True  # run once before the idle baseline (the long ones too: their first run may allocate)


KINDS = [
    Kind(
        "ping_flood",
        "125-byte pings, up to 5,000/s, never reading",
        ("cut", "open, a pong per ping", "open, pongs coalesced"),
        ping_flood,
    ),
    Kind("never_reads", "never reads from /firehose (16 KiB messages without end)", ("cut",), never_reads),
    Kind("bad_close_reason", "a close reason that is not UTF-8", ("close 1007",), bad_close_reason),
    Kind("oversize", f"one message of {MAX_MESSAGE_SIZE + 1:,} bytes (max_message_size + 1)", ("close 1009",), oversize),
    Kind("over_rate", f"{2 * MAX_MESSAGES_PER_SECOND} messages at once ({MAX_MESSAGES_PER_SECOND}/s allowed)", ("close 1008",), over_rate),
    Kind("bad_head", "a 100 KB header / 5,000 headers / 10,000 extension parameters", ("http 400", "reset"), bad_head),
    Kind("slow_head", "a request head that never completes (silent, or a line every 0.5 s)", ("closed at the deadline",), slow_head),
    Kind("reset", "a TCP reset (SO_LINGER 0) mid-message, ours or the server's", ("reset sent",), reset_mid_message),
    Kind("vanish", "connect and leave (before or right after the upgrade, no close frame)", ("vanished",), vanish),
]
EXPECTED_WHY = {
    "cut": f"TCP cut without a close frame: send_timeout ({SEND_TIMEOUT:g} s), seen within {HOLD:g} s",
    "open, a pong per ping": "open: the kernel's buffers took every pong (the worker owes at most 64; RSS goal)",
    "open, pongs coalesced": "open, pongs coalesced",
    "close 1007": "close 1007",
    "close 1009": "close 1009",
    "close 1008": "close 1008",
    "http 400": "HTTP 400 (or a reset that overtook it)",
    "closed at the deadline": f"closed after handshake_timeout ({HANDSHAKE_TIMEOUT:g} s)",
    "reset sent": "(nothing to see; the server must not leak)",
    "vanished": "(nothing to see; the server must not leak)",
}


@dataclass
class Answers:
    """What each misbehaviour got, by answer, and how long its episodes took."""

    episodes: Counter[str] = field(default_factory=Counter)
    answers: dict[str, Counter[str]] = field(default_factory=lambda: {kind.name: Counter() for kind in KINDS})
    seconds: dict[str, list[float]] = field(default_factory=lambda: {kind.name: [] for kind in KINDS})
    details: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind.name: [] for kind in KINDS})

    async def episode(self, kind: Kind, port: int) -> None:
        number = self.episodes[kind.name]
        self.episodes[kind.name] += 1
        started = time.monotonic()
        detail: dict[str, Any] = {}
        try:
            answer = await asyncio.wait_for(kind.run(port, number, detail), 30)
        except TimeoutError:
            answer = "no answer in 30 s"
        except Refused as refused:
            answer = f"upgrade refused: {refused}"[:80]
        except (OSError, AssertionError) as error:
            answer = f"error: {type(error).__name__}"
        self.answers[kind.name][answer] += 1
        self.seconds[kind.name].append(time.monotonic() - started)
        if detail and len(self.details[kind.name]) < 50:
            self.details[kind.name].append({"answer": answer, **detail})


async def misbehave(slot: int, port: int, answers: Answers, stop: asyncio.Event) -> None:
    """One misbehaving client: each misbehaviour in turn (from its own starting point), reconnecting after each."""
    turn = slot
    rng = random.Random(slot)
    while not stop.is_set():
        await answers.episode(KINDS[turn % len(KINDS)], port)
        turn += 1
        await asyncio.sleep(rng.uniform(0.2, 1.0))


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class Settings:
    clients: int
    seconds: float
    misbehaving: int
    warmup: float
    sample_every: float
    interval: tuple[float, float]
    workers: int
    quick: bool


async def prime(server: Server, settings: Settings, answers: Answers) -> None:
    """Serve some connections and every misbehaviour once, so what a worker makes once (its keep-alive loop, lazy
    imports) is in the idle baseline; until each worker has accepted a WebSocket."""
    tally = Tally()
    for _ in range(10):
        clients = await open_steady(f"{server.url}/ws", 50, tally, (0.1, 0.2))
        for client in clients:
            client.send()
        await drain_echoes(clients, 10)
        await leave(clients)
        accepted = [(await server.probe(pid)).get("accepted", 0) for pid in server.workers()]
        if all(accepted):
            break
    await asyncio.gather(*(answers.episode(kind, server.port) for kind in KINDS if kind.prime))


async def wait_idle(server: Server, baseline: dict[str, Any] | None, timeout: float) -> float:
    """Until every worker has no WebSocket open and (given a baseline) is back to its descriptors and greenlets."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        done = True
        for pid in server.workers():
            answer = await server.probe(pid)
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            before = (baseline or {}).get(str(pid))
            if answer.get("open") or (before and (fds > before["fds"] or answer["greenlets"] > before["greenlets"])):
                done = False
        if done:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


def progress(at: float, sample: dict[str, Any], tally: Tally, answers: Answers) -> str:
    workers = "; ".join(
        f"{pid}: {w['rss_kb'] / 1024:.0f} MB, {w['fds']} fds, {w.get('greenlets', '?')} greenlets, {w.get('open', '?')} open"
        for pid, w in sample["workers"].items()
    )
    return (
        f"  {at:6.0f} s {sample['phase']:<12} {workers} | sent {tally.sent:,}, echoed {tally.echoed:,}, lost {tally.lost}, "
        f"corrupted {tally.corrupted}, closed {tally.unexpected_closes}, pings {tally.pings:,} | misbehaving episodes "
        f"{sum(answers.episodes.values()):,}"
    )


async def watch(server: Server, settings: Settings, origin: float, tally: Tally, answers: Answers, samples: list[dict[str, Any]]) -> None:
    """Sample every ``sample_every`` s, at the end of warm-up and at the end of the run."""
    duration, warmup, every = settings.seconds, settings.warmup, settings.sample_every
    times = sorted({*(k * every for k in range(int(duration // every) + 1)), warmup, duration})
    for at in times:
        delay = origin + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif at not in (warmup, duration) and -delay > every / 2:
            continue  # behind: skip an ordinary sample, never the two that are compared
        phase = "end" if at == duration else "steady start" if at == warmup else "warm-up" if at < warmup else "steady"
        sample = await server.sample(at, phase)
        samples.append(sample)
        log(progress(at, sample, tally, answers))


async def soak(server: Server, settings: Settings) -> dict[str, Any]:
    answers, tally = Answers(), Tally()
    samples: list[dict[str, Any]] = []
    log(f"priming: 50 connections at a time until both workers served one, then each misbehaviour once (up to {HOLD + DRAIN:.0f} s)")
    await prime(server, settings, answers)
    primed = {kind: dict(counts) for kind, counts in answers.answers.items()}
    answers = Answers()
    await wait_idle(server, None, 30)
    idle = await server.sample(0.0, "idle")
    samples.append(idle)
    log(progress(0.0, idle, tally, answers))

    log(f"opening {settings.clients:,} well-behaved clients (100 handshakes at a time)")
    opening = time.monotonic()
    clients = await open_steady(f"{server.url}/ws", settings.clients, tally, settings.interval)
    opened_in = time.monotonic() - opening
    log(f"  {tally.connected:,} connected in {opened_in:.1f} s" + (f"; {len(tally.connect_errors)} failed" if tally.connect_errors else ""))
    if not clients:
        raise RuntimeError(f"no client connected: {tally.connect_errors[:3]}")
    for client in clients:
        client.start()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    origin = time.monotonic()
    stop = asyncio.Event()
    slots = [asyncio.ensure_future(misbehave(slot, server.port, answers, stop)) for slot in range(settings.misbehaving)]
    log(f"soaking for {settings.seconds:.0f} s with {settings.misbehaving} misbehaving clients; warm-up {settings.warmup:.0f} s")
    await watch(server, settings, origin, tally, answers, samples)
    ran = time.monotonic() - origin
    after = resource.getrusage(resource.RUSAGE_SELF)

    stop.set()
    for slot in slots:
        slot.cancel()  # an episode cut short is not counted
    await asyncio.gather(*slots, return_exceptions=True)
    for client in clients:
        client.stop()
    await drain_echoes(clients, 15)
    for client in clients:
        tally.lost += len(client.outstanding)  # never came back
        client.outstanding.clear()
    log("every client leaves")
    await leave(clients)
    settled = await wait_idle(server, idle["workers"], 60)
    samples.append(await server.sample(ran + settled, "idle after"))
    log(progress(ran + settled, samples[-1], tally, answers))

    latencies = sorted(tally.latencies)
    return {
        "well_behaved": {
            "clients": tally.clients,
            "connected": tally.connected,
            "connect_errors": tally.connect_errors[:10],
            "opened_in_s": round(opened_in, 1),
            "sent": tally.sent,
            "echoed": tally.echoed,
            "lost": tally.lost,
            "corrupted": tally.corrupted,
            "unexpected_closes": tally.unexpected_closes,
            "close_codes": dict(tally.close_codes),
            "pings_answered": tally.pings,
            "clients_pinged": sum(1 for c in clients if c.pinged),
            "echo_p50_ms": _ms(latencies, 0.5),
            "echo_p99_ms": _ms(latencies, 0.99),
            "echo_max_ms": _ms(latencies, 1.0),
        },
        "misbehaving": {
            "clients": settings.misbehaving,
            "primed": primed,
            "kinds": {
                kind.name: {
                    "what": kind.what,
                    "expected_answers": list(kind.expected),
                    "episodes": sum(answers.answers[kind.name].values()),
                    "expected": sum(n for a, n in answers.answers[kind.name].items() if a in kind.expected),
                    "other": sum(n for a, n in answers.answers[kind.name].items() if a not in kind.expected),
                    "answers": dict(answers.answers[kind.name].most_common()),
                    "seconds_p50": _quantile(sorted(answers.seconds[kind.name]), 0.5),
                    "seconds_max": _quantile(sorted(answers.seconds[kind.name]), 1.0),
                    "details": answers.details[kind.name][:10],
                }
                for kind in KINDS
            },
        },
        "ran_s": round(ran, 1),
        "settled_s": round(settled, 1),
        "loadgen_cpu_cores": round((after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / ran, 3),
        "samples": samples,
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def _ms(values: list[float], q: float) -> float | None:
    value = _quantile(values, q)
    return None if value is None else round(1000 * value, 1)


# ---------------------------------------------------------------------------------------------------- judging


def per_worker(samples: list[dict[str, Any]], ran: float, tolerance: int) -> tuple[dict[str, Any], list[str]]:
    """Each worker's numbers at the four points compared (idle, steady start, end, idle after); problems found."""
    by_phase = {s["phase"]: s["workers"] for s in samples if s["phase"] in ("idle", "steady start", "end", "idle after")}
    problems = []
    idle, start, end, after = (by_phase.get(p, {}) for p in ("idle", "steady start", "end", "idle after"))
    workers: dict[str, Any] = {}
    for pid in idle:
        if not all(pid in phase for phase in (start, end, after)):
            problems.append(f"worker {pid} was replaced during the run")
            continue
        points = [idle[pid], start[pid], end[pid], after[pid]]
        steady = [s["workers"][pid] for s in samples if s["phase"] in ("steady start", "steady", "end") and pid in s["workers"]]
        summary: dict[str, Any] = {
            "rss_steady_start_kb": start[pid]["rss_kb"],
            "rss_end_kb": end[pid]["rss_kb"],
            "rss_max_steady_kb": max(w["rss_kb"] for w in steady),
            "rss_growth_pct": round(100.0 * (end[pid]["rss_kb"] - start[pid]["rss_kb"]) / start[pid]["rss_kb"], 2),
            "websockets_open_end": end[pid].get("open"),
            "cpu_share": round((end[pid]["cpu_s"] - start[pid]["cpu_s"]) / max(1e-9, ran - samples_time(samples, "steady start")), 3),
        }
        for key in ("fds", "greenlets", "gc_objects"):
            values = [point.get(key) for point in points]
            summary[key] = dict(zip(("idle", "steady_start", "end", "idle_after"), values, strict=True))
        workers[pid] = summary
        for key in ("fds", "greenlets"):
            got = summary[key]
            if None in got.values():
                problems.append(f"worker {pid}: no {key} count (probe failed)")
            elif got["idle_after"] != got["idle"]:
                problems.append(f"worker {pid}: {got['idle_after'] - got['idle']:+d} {key} after every client left")
            elif got["end"] - got["steady_start"] > tolerance:
                problems.append(f"worker {pid}: {got['end'] - got['steady_start']:+d} {key} from the steady start to the end")
    if not idle:
        problems.append("no idle sample")
    return workers, problems


def samples_time(samples: list[dict[str, Any]], phase: str) -> float:
    return float(next((s["t"] for s in samples if s["phase"] == phase), 0.0))


def judge(result: dict[str, Any], tracebacks: int, settings: Settings) -> dict[str, dict[str, Any]]:
    tolerance = settings.misbehaving + 5
    workers, problems = per_worker(result["samples"], result["ran_s"], tolerance)
    result["workers"] = workers
    growth = {pid: w["rss_growth_pct"] for pid, w in workers.items()}
    fd_problems = [p for p in problems if "fds" in p or "replaced" in p or "idle sample" in p]
    greenlet_problems = [p for p in problems if "greenlets" in p or "replaced" in p or "idle sample" in p]
    wb = result["well_behaved"]
    intact = (
        wb["connected"] == wb["clients"]
        and wb["sent"] > 0
        and wb["echoed"] == wb["sent"]
        and wb["lost"] == wb["corrupted"] == wb["unexpected_closes"] == 0
    )
    kinds = result["misbehaving"]["kinds"]
    wrong = {name: {a: n for a, n in k["answers"].items() if a not in k["expected_answers"]} for name, k in kinds.items() if k["other"]}
    unrun = [name for name, k in kinds.items() if not k["episodes"]]
    return {
        "rss_flat": {
            "goal": f"RSS flat: at most {RSS_GROWTH_GOAL_PCT:g}% growth per worker after warm-up",
            "pass": bool(growth) and all(g <= RSS_GROWTH_GOAL_PCT for g in growth.values()) and len(workers) == settings.workers,
            "detail": ", ".join(f"{pid}: {g:+.1f}%" for pid, g in growth.items()) or "; ".join(problems),
        },
        "no_fd_leak": {
            "goal": f"no descriptor leaked: back to the idle count once every client left (at most +{tolerance} from steady start to end)",
            "pass": not fd_problems,
            "detail": "; ".join(fd_problems)
            or ", ".join(f"{pid}: {w['fds']['idle']} -> {w['fds']['idle_after']}" for pid, w in workers.items()),
        },
        "no_greenlet_leak": {
            "goal": f"no greenlet leaked: back to the idle count once every client left (at most +{tolerance} from steady start to end)",
            "pass": not greenlet_problems,
            "detail": "; ".join(greenlet_problems)
            or ", ".join(f"{pid}: {w['greenlets']['idle']} -> {w['greenlets']['idle_after']}" for pid, w in workers.items()),
        },
        "messages_intact": {
            "goal": "every well-behaved client connected, every message echoed exact and in order, no connection closed",
            "pass": intact,
            "detail": f"{wb['connected']:,}/{wb['clients']:,} connected, {wb['sent']:,} sent, {wb['echoed']:,} echoed, "
            f"{wb['lost']} lost, {wb['corrupted']} corrupted, {wb['unexpected_closes']} closed {wb['close_codes'] or ''}".strip(),
        },
        "misbehaviour_answered": {
            "goal": "every misbehaving episode got its documented answer",
            "pass": not wrong and not unrun,
            "detail": "; ".join(
                [f"{name}: {', '.join(f'{a} x{n}' for a, n in answers.items())}" for name, answers in wrong.items()]
                + [f"{name}: not run" for name in unrun]
            )
            or f"{sum(k['episodes'] for k in kinds.values()):,} episodes",
        },
        "no_traceback": {
            "goal": "no traceback in the server's log",
            "pass": tracebacks == 0,
            "detail": f"{tracebacks} traceback(s)" if tracebacks else "none",
        },
    }


def report(result: dict[str, Any], settings: Settings) -> str:
    lines = [
        f"soak: {settings.clients:,} well-behaved clients + {settings.misbehaving} misbehaving, {result['ran_s']:.0f} s "
        f"(warm-up {settings.warmup:.0f} s), {settings.workers} workers; pings every {KEEP_ALIVE_INTERVAL:g} s of silence",
        "",
        "| worker | RSS after warm-up | RSS at end | growth | fds idle / steady start / end / idle after "
        "| greenlets idle / steady start / end / idle after | CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for pid, w in result.get("workers", {}).items():
        fds, greenlets = w["fds"], w["greenlets"]
        lines.append(
            f"| {pid} | {w['rss_steady_start_kb'] / 1024:.1f} MB | {w['rss_end_kb'] / 1024:.1f} MB | {w['rss_growth_pct']:+.2f}% "
            f"| {' / '.join(str(v) for v in fds.values())} | {' / '.join(str(v) for v in greenlets.values())} "
            f"| {100 * w['cpu_share']:.0f}% |"
        )
    wb = result["well_behaved"]
    lines += [
        "",
        f"well-behaved: {wb['connected']:,} of {wb['clients']:,} connected (in {wb['opened_in_s']} s), {wb['sent']:,} messages sent, "
        f"{wb['echoed']:,} echoed intact, {wb['lost']} lost, {wb['corrupted']} corrupted, {wb['unexpected_closes']} unexpected "
        f"closes; {wb['pings_answered']:,} pings answered ({wb['clients_pinged']:,} clients pinged); echo p50 {wb['echo_p50_ms']} ms, "
        f"p99 {wb['echo_p99_ms']} ms, max {wb['echo_max_ms']} ms; generator CPU {100 * result['loadgen_cpu_cores']:.0f}% of a core",
        "",
        "| misbehaviour | expected answer | episodes | expected | other | answers |",
        "|---|---|---|---|---|---|",
    ]
    for k in result["misbehaving"]["kinds"].values():
        expected = " or ".join(EXPECTED_WHY.get(a, a) for a in k["expected_answers"])
        answers = ", ".join(f"{a} x{n}" for a, n in k["answers"].items())
        lines.append(f"| {k['what']} | {expected} | {k['episodes']:,} | {k['expected']:,} | {k['other']:,} | {answers} |")
    lines += ["", "| goal | result | detail |", "|---|---|---|"]
    for goal in result["goals"].values():
        lines.append(f"| {goal['goal']} | {'PASS' if goal['pass'] else 'MISS'} | {goal['detail']} |")
    return "\n".join(lines)


async def main_async(settings: Settings, logs: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsgi-ws-bench-soak-") as tmp:
        logdir = Path(logs or tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        probe_dir = Path(tmp) / "probe"  # Unix socket paths must be short: never under --logs
        probe_dir.mkdir()
        log(f"server log: {logdir / 'server.log'}")
        server = Server(logdir, probe_dir, settings.workers)
        try:
            result = await soak(server, settings)
        finally:
            server.stop()
        tracebacks, first = server.tracebacks()
        result["server_tracebacks"] = tracebacks
        if first:
            result["first_traceback"] = first
        result["goals"] = judge(result, tracebacks, settings)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, help="well-behaved clients (default 10,000; --quick: 300)")
    parser.add_argument("--minutes", type=float, help="length of the soak, from when every client is connected (default 10; --quick: 40 s)")
    parser.add_argument(
        "--misbehaving",
        type=float,
        default=0.01,
        help="misbehaving clients as a share of --clients, at least one per misbehaviour (default 0.01: 100 for 10,000)",
    )
    parser.add_argument("--warmup", type=float, help="seconds left out of the RSS growth (default: 10%% of the run, at most 60)")
    parser.add_argument("--sample-every", type=float, help="seconds between samples (default 10; --quick: 5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 300 clients for 40 s; only message integrity judged")
    parser.add_argument("--json", help="write every raw number to this file")
    parser.add_argument("--logs", help="keep the server's log in this folder")
    args = parser.parse_args()
    clients = args.clients or (300 if args.quick else 10_000)
    seconds = 60 * args.minutes if args.minutes else (40.0 if args.quick else 600.0)
    misbehaving = max(len(KINDS), round(args.misbehaving * clients)) if args.misbehaving > 0 else 0
    settings = Settings(
        clients=clients,
        seconds=seconds,
        misbehaving=misbehaving,
        warmup=args.warmup if args.warmup is not None else min(60.0, 0.1 * seconds),
        sample_every=args.sample_every or (5.0 if args.quick else 10.0),
        interval=(7.0, 9.0),  # longer than the keep-alive interval: every client is also pinged between its messages
        workers=args.workers,
        quick=args.quick,
    )
    limit = bench_run.raise_open_files()
    needed = clients + misbehaving + 200
    if limit < needed:
        log(f"the open-file limit is {limit}, {clients:,} clients need about {needed:,}: raise the hard limit (ulimit -Hn)")
        return 1
    started = time.monotonic()
    try:
        result = uvloop.run(main_async(settings, args.logs))
    except Exception as error:
        log(f"the soak could not run: {error!r}")
        if args.json:
            Path(args.json).write_text(json.dumps({"error": repr(error)}, indent=1))
        return 1
    result["settings"] = {
        **{k: v for k, v in vars(settings).items() if k != "interval"},
        "message_interval_s": list(settings.interval),
        "server_env": SERVER_ENV,
        "took_s": round(time.monotonic() - started, 1),
    }
    print(report(result, settings))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    goals = result["goals"]
    judged = ["messages_intact"] if settings.quick else list(goals)
    return 0 if all(goals[name]["pass"] for name in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
