"""The load generator: picows (a compiled asyncio WebSocket client) on uvloop, writing batched pre-masked frames.

Every frame a scenario sends is built and masked once, before the clock starts; sending is one transport write of
a slice of those bytes, so the generator spends its time in C (uvloop, picows' parser) and in one small Python
callback per echoed frame, which checks the payload byte for byte. The scenarios are coroutines that return plain
dicts; ``bench/run.py`` starts the servers, runs these against each one and prints the table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from frames import masked_frame
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

T = TypeVar("T")
MAX_FRAME = 64 * 1024 * 1024
TEXT, BINARY, CONTINUATION, PING = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION, WSMsgType.PING
# picows warns each time a 16 MiB write crosses the transport's high-water mark; expected here, since we wait for the echo
logging.getLogger("picows").setLevel(logging.ERROR)


class Failure(Exception):
    """A scenario could not be measured: wrong echo or delivery, too few connections, timeout. The message goes in the table."""


def text_payloads(tag: int, count: int, size: int = 32) -> list[bytes]:
    """``count`` distinct ASCII payloads of ``size`` bytes, so a reply in the wrong order or to the wrong connection fails."""
    out = []
    for i in range(count):
        head = f"c{tag:05d}m{i:03d}:".encode()
        filler = bytes(0x61 + (tag * 7 + i * 3 + j) % 26 for j in range(size - len(head)))
        out.append((head + filler)[:size])
    return out


class Echo(WSListener):
    """A connection that sends pre-masked frames and checks every echo against what it sent, in order.

    Text messages travel in a ring of ``depth`` distinct payloads: ``prime()`` writes the first ``depth`` frames, and
    with ``refill`` each batch of echoes that arrived in one read is answered by one write of as many new frames, so
    the connection keeps ``depth`` messages in flight. Large messages may come back fragmented; they are joined.
    """

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.error: str | None = None
        self.payloads: list[bytes] = []
        self.opcode = TEXT
        self.blob = memoryview(b"")
        self.frame_size = 0
        self.depth = 0
        self.sent = 0
        self.received = 0
        self.pending = 0
        self.refill = False
        self.stamps: list[float] = []
        self.latencies: list[float] | None = None
        self.parts: list[bytes] = []
        self.parts_kind = TEXT
        self.pings = 0
        self.on_message: Callable[[Echo], None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def load(self, payloads: list[bytes], binary: bool = False) -> None:
        """Pre-build the masked frames of ``payloads`` (all the same size), twice in a row so any run of up to
        ``len(payloads)`` consecutive frames of the ring is one contiguous slice."""
        frames = [masked_frame(2 if binary else 1, p) for p in payloads]
        self.payloads = payloads
        self.opcode = BINARY if binary else TEXT
        self.frame_size = len(frames[0])
        self.blob = memoryview(b"".join(frames * 2))
        self.depth = len(payloads)
        self.sent = self.received = self.pending = 0
        self.stamps = [0.0] * self.depth

    def write(self, count: int) -> None:
        """Send the next ``count`` (<= depth) frames of the ring in one write."""
        assert self.transport is not None
        start = self.sent % self.depth
        now = time.perf_counter()
        stamps = self.stamps
        for i in range(start, start + count):
            stamps[i % self.depth] = now
        self.transport.underlying_transport.write(self.blob[start * self.frame_size : (start + count) * self.frame_size])
        self.sent += count

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        self.refill = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == PING:  # only reached with enable_auto_pong=False (the keep-alive scenario counts pings)
            self.pings += 1
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if kind == WSMsgType.CLOSE or kind == WSMsgType.PONG:
            return
        if not frame.fin or kind == CONTINUATION or self.parts:
            if kind != CONTINUATION and self.parts:
                self.fail(f"new {kind.name} frame inside a fragmented message")
                return
            self.parts.append(frame.get_payload_as_bytes())
            if kind != CONTINUATION:
                self.parts_kind = kind
            if not frame.fin:
                return
            kind = self.parts_kind
            data = b"".join(self.parts)
            self.parts = []
        else:
            data = frame.get_payload_as_bytes()
        if self.depth == 0:
            self.fail("unexpected message")
            return
        i = self.received % self.depth
        if kind != self.opcode:
            self.fail(f"echo came back as {kind.name}, sent {self.opcode.name}")
            return
        if data != self.payloads[i]:
            expected = self.payloads[i]
            self.fail(f"echo differs: {len(data)} bytes back for {len(expected)} sent" if len(data) != len(expected) else "echo differs")
            return
        self.received += 1
        if self.latencies is not None:
            self.latencies.append(time.perf_counter() - self.stamps[i])
        if self.on_message is not None:
            self.on_message(self)
        self.pending += 1
        if frame.last_in_buffer:
            if self.refill:
                self.write(self.pending)
            self.pending = 0


async def open_connections(url: str, count: int, concurrency: int = 100, auto_pong: bool = True, timeout: float = 60.0) -> list[Echo]:
    """Open ``count`` connections, at most ``concurrency`` handshakes at a time, all within ``timeout`` seconds."""
    semaphore = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one() -> Echo | None:
        async with semaphore:
            try:
                _, listener = await ws_connect(
                    Echo, url, max_frame_size=MAX_FRAME, enable_auto_pong=auto_pong, websocket_handshake_timeout=20
                )
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:120])
                return None
            assert isinstance(listener, Echo)
            return listener

    return await gather_connections(one, count, timeout, errors, close_all)


async def gather_connections(
    one: Callable[[], Awaitable[T | None]],
    count: int,
    timeout: float,
    errors: list[str],
    close: Callable[[list[T]], Awaitable[None]],
) -> list[T]:
    """Run ``one()`` ``count`` times at once; all its connections, or :class:`Failure` (the others closed with ``close``).

    ``one`` returns None when it failed, after appending why to ``errors``; the first reason goes in the failure.
    """
    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    connections = [c for t in done if (c := t.result()) is not None]
    if len(connections) < count:
        await close(connections)
        reason = errors[0] if errors else f"timeout after {timeout:.0f} s"
        raise Failure(f"{len(connections)} of {count} connected ({reason})")
    return connections


async def close_all(connections: list[Echo], timeout: float = 15.0) -> None:
    """Close handshake on every connection, then cut whatever has not closed within ``timeout``."""
    for c in connections:
        if c.transport is not None and not c.transport.is_disconnected:
            c.refill = False
            c.transport.send_close(WSCloseCode.OK)
    waits = [asyncio.ensure_future(c.transport.wait_disconnected()) for c in connections if c.transport is not None]
    if waits:
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
    for c in connections:
        if c.transport is not None and not c.transport.is_disconnected:
            c.transport.disconnect(graceful=False)


def check(connections: list[Echo]) -> None:
    for c in connections:
        if c.error is not None:
            raise Failure(c.error)
        if c.transport is not None and c.transport.is_disconnected:
            raise Failure("the server closed a connection")


async def drain(connections: list[Echo], timeout: float) -> None:
    """Wait until every message sent has come back (or a check fails), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check(connections)
        if all(c.received == c.sent for c in connections):
            return
        await asyncio.sleep(0.005)
    missing = sum(c.sent - c.received for c in connections)
    raise Failure(f"{missing} echoes missing after {timeout:.0f} s")


async def echo_once(url: str) -> None:
    """One text and one binary echo: the server is up and answers correctly."""
    (c,) = await open_connections(url, 1)
    try:
        for payloads, binary in (([b"hello"], False), ([os.urandom(1000)], True)):
            c.load(payloads, binary)
            c.write(1)
            await drain([c], 10)
    finally:
        await close_all([c])


async def pipeline(
    url: str, connections: int, depth: int, warmup: float, windows: int, server_cpu: Callable[[], float], size: int = 32
) -> dict[str, Any]:
    """Scenarios (a) and (b): ``connections`` each keep ``depth`` text messages of ``size`` bytes in flight.

    Returns messages/s (median of ``windows`` one-second windows after ``warmup``), each connection's share of the
    whole window relative to the mean, latency percentiles over the window, and the CPU use (share of one core) of
    the generator and of the server.
    """
    conns = await open_connections(url, connections)
    try:
        for n, c in enumerate(conns):
            c.load(text_payloads(n, depth, size))
            c.refill = True
        for c in conns:
            c.write(depth)
        await asyncio.sleep(warmup)
        check(conns)
        for c in conns:
            c.latencies = []
        start_counts = [c.received for c in conns]
        rates = []
        cpu0, server0, t0 = time.process_time(), server_cpu(), time.perf_counter()
        for _ in range(windows):
            before, w0 = sum(c.received for c in conns), time.perf_counter()
            await asyncio.sleep(1.0)
            rates.append((sum(c.received for c in conns) - before) / (time.perf_counter() - w0))
            check(conns)
        elapsed = time.perf_counter() - t0
        cpu, server = (time.process_time() - cpu0) / elapsed, (server_cpu() - server0) / elapsed
        shares = [c.received - s for c, s in zip(conns, start_counts, strict=True)]
        latencies = sorted(x for c in conns for x in (c.latencies or ()))
        for c in conns:
            c.refill = False
            c.latencies = None
        await drain(conns, 15)
        mean_share = statistics.fmean(shares)
        return {
            "msgs_per_s": statistics.median(rates),
            "windows": rates,
            "fairness": min(shares) / mean_share if mean_share else 0.0,
            "slowest": min(shares),
            "fastest": max(shares),
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
            "loadgen_cpu": cpu,
            "server_cpu": server,
        }
    finally:
        await close_all(conns)


async def large(url: str, size: int, min_messages: int, duration: float, timeout: float) -> dict[str, Any]:
    """Scenarios (c) and (d): one connection echoes binary messages of ``size`` bytes one at a time.

    One message first as warm-up, then at least ``min_messages`` and for at least ``duration`` seconds; MB/s is
    ``size`` / the median round trip (MB = 10^6 bytes, one direction). ``timeout`` bounds the whole scenario: an echo
    that is cut short (a server writing less than the frame's announced length) is never complete, so it ends there.
    """
    (c,) = await open_connections(url, 1)
    try:
        c.load([os.urandom(size)], binary=True)
        loop = asyncio.get_running_loop()
        back = loop.create_future()

        def arrived(_: Echo) -> None:
            if not back.done():
                back.set_result(None)

        c.on_message = arrived
        times: list[float] = []
        deadline = time.monotonic() + timeout
        for n in range(1 + max(min_messages, 100_000)):  # the first is the warm-up
            if len(times) >= min_messages and sum(times) >= duration:
                break
            back = loop.create_future()
            t0 = time.perf_counter()
            c.write(1)
            while not back.done():
                check([c])
                if time.monotonic() > deadline:
                    raise Failure(f"no complete echo of {size >> 20} MiB within {timeout:.0f} s ({c.received} done)")
                await asyncio.wait([back], timeout=0.1)
            if n:
                times.append(time.perf_counter() - t0)
        return {"mb_per_s": size / statistics.median(times) / 1e6, "messages": len(times)}
    finally:
        await close_all([c])


async def fan_in(url: str, connections: int, rounds: int) -> dict[str, Any]:
    """Scenario (e): ``connections`` connections each send one 32-byte message at the same moment; the round ends
    when every echo is back. Also times opening the connections (100 handshakes at a time)."""
    t0 = time.perf_counter()
    conns = await open_connections(url, connections)
    handshake_s = time.perf_counter() - t0
    try:
        for n, c in enumerate(conns):
            c.load(text_payloads(n, 1))
        remaining = 0
        done = asyncio.get_running_loop().create_future()

        def one_back(_: Echo) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 and not done.done():
                done.set_result(None)

        for c in conns:
            c.on_message = one_back
        times = []
        for _ in range(rounds):
            remaining = len(conns)
            done = asyncio.get_running_loop().create_future()
            t0 = time.perf_counter()
            for c in conns:
                c.write(1)
            try:
                await asyncio.wait_for(asyncio.shield(done), 30)
            except TimeoutError:
                check(conns)
                raise Failure(f"{remaining} of {len(conns)} echoes missing after 30 s") from None
            times.append(time.perf_counter() - t0)
            check(conns)
            await asyncio.sleep(0.02)
        return {
            "round_ms": 1000 * statistics.median(times),
            "msgs_per_s": len(conns) / statistics.median(times),
            "handshakes_per_s": connections / handshake_s,
        }
    finally:
        await close_all(conns)


async def hold_idle(url: str, connections: int, settle: float, measure: Callable[[], float]) -> dict[str, Any]:
    """Scenario (f): ``measure()`` (server RSS) before, then with ``connections`` open, each having echoed once."""
    base = measure()
    conns = await open_connections(url, connections)
    try:
        for n, c in enumerate(conns):
            c.load(text_payloads(n, 1))
            c.write(1)
        await drain(conns, 30)
        await asyncio.sleep(settle)
        check(conns)
        after = measure()
        return {"kb_per_conn": (after - base) / connections / 1024, "rss_before_mb": base / 2**20, "rss_after_mb": after / 2**20}
    finally:
        await close_all(conns)


async def keep_alive(url: str, connections: int, window: float, cpu_seconds: Callable[[], float]) -> dict[str, Any]:
    """Scenario (g): ``connections`` idle connections that answer pings; server CPU and pings seen over ``window``."""
    conns = await open_connections(url, connections, auto_pong=False)
    try:
        await asyncio.sleep(1.0)  # let the handshakes' work finish
        check(conns)
        pings0, cpu0, t0 = sum(c.pings for c in conns), cpu_seconds(), time.perf_counter()
        await asyncio.sleep(window)
        cpu, elapsed = cpu_seconds() - cpu0, time.perf_counter() - t0
        pings = sum(c.pings for c in conns) - pings0
        check(conns)
        return {
            "cpu_percent": 100 * cpu / elapsed,
            "pings": pings,
            "pinged_connections": sum(1 for c in conns if c.pings),
            "us_per_ping": 1e6 * cpu / pings if pings else None,
        }
    finally:
        await close_all(conns)
