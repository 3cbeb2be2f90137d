"""Closing a connection when its credentials expire: ``ws.close_at(when, code, reason)``.

As SignalR's ``CloseOnAuthenticationExpiration``: the application says when the credentials the connection was
accepted with stop being valid (a JWT's ``exp``, a session's end), and the connection is closed then, with 1008
(policy violation) and "authentication expired" unless told otherwise. Calling it again replaces the deadline (a
refreshed token), ``None`` cancels it, a deadline already past closes at once. Set before accept, it applies from the
accept on; the deadline is dropped when the connection ends.

No greenlet or thread waits per connection. Under gevent each deadline is one libev timer watcher, whose callback
(in the event loop) starts a short-lived greenlet that closes; under threads one process-wide thread keeps a heap of
every deadline and starts a short-lived thread to close each that is due. ``when`` is wall-clock time; the timer
counts the monotonic clock and, when it fires, checks the wall clock once more (a clock set back re-arms it).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from websockets.frames import EXTERNAL_CLOSE_CODES

from ..exceptions import InvalidArgument
from ..per_process import PerProcess
from ..protocol.session import CloseCode
from .keepalive import gevent_patched, spawn_background
from .roles import Closable

__all__ = [
    "DEFAULT_CODE",
    "DEFAULT_REASON",
    "Expiry",
    "GeventTimers",
    "ThreadTimers",
    "Timer",
    "Timers",
    "close_at",
    "deadline_of",
    "timers",
]

log = logging.getLogger("wsgi_ws")

#: The close code of an expired connection: policy violation, as SignalR's.
DEFAULT_CODE = CloseCode.POLICY_VIOLATION
#: The close reason of an expired connection.
DEFAULT_REASON = "authentication expired"

Callback = Callable[[], object]


class Expiring(Closable, Protocol):
    """What expiry needs of a connection (``WebSocket`` has it)."""

    _expiry: Expiry | None
    _on_accept: Callable[[Any], object] | None

    @property
    def accepted(self) -> bool: ...

    def on_finish(self, callback: Callback) -> None: ...


class Timer(Protocol):
    """A scheduled call: ``close()`` cancels it (a no-op once it ran)."""

    def close(self) -> None: ...


class Timers(Protocol):
    """Runs ``function(*args)`` after ``delay`` seconds, unless the returned timer is closed first."""

    def schedule(self, delay: float, function: Callable[..., object], *args: Any) -> Timer: ...


class GeventTimers:
    """A libev timer watcher per deadline (the handle); ``function`` runs in the event loop, so it must not block."""

    def schedule(self, delay: float, function: Callable[..., object], *args: Any) -> Timer:
        import gevent

        timer: Timer = gevent.get_hub().loop.timer(max(delay, 0.0))
        timer.start(function, *args)  # type: ignore[attr-defined]
        return timer


class _Entry:
    """A deadline in the heap; ``function`` is None once cancelled (what it held is dropped at once)."""

    __slots__ = ("args", "at", "function", "owner", "sequence")

    def __init__(self, owner: ThreadTimers, at: float, sequence: int, function: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.owner: ThreadTimers | None = owner
        self.at = at
        self.sequence = sequence
        self.function: Callable[..., object] | None = function
        self.args: tuple[Any, ...] | None = args

    def __lt__(self, other: _Entry) -> bool:
        return (self.at, self.sequence) < (other.at, other.sequence)

    def close(self) -> None:
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.cancel(self)


class ThreadTimers:
    """One thread for every deadline of the process: a heap, a condition; ``callback`` runs in that thread."""

    def __init__(self, spawn: Callable[..., object] = spawn_background, clock: Callable[[], float] = time.monotonic) -> None:
        self._spawn = spawn
        self._clock = clock
        self._heap: list[_Entry] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        self._condition = threading.Condition(threading.Lock())
        self._running = False

    def __len__(self) -> int:
        """Deadlines waiting (cancelled ones not counted)."""
        return len(self._heap) - self._cancelled

    def schedule(self, delay: float, function: Callable[..., object], *args: Any) -> _Entry:
        entry = _Entry(self, self._clock() + delay, next(self._sequence), function, args)
        with self._condition:
            heapq.heappush(self._heap, entry)
            if not self._running:
                self._running = True
                self._spawn(self.run)
            elif self._heap[0] is entry:
                self._condition.notify()  # an earlier deadline than the one the thread waits for
        return entry

    def cancel(self, entry: _Entry) -> None:
        """Drop ``entry`` (``entry.close()`` calls this); it leaves the heap when due, or sooner in a compaction."""
        with self._condition:
            if entry.function is None:
                return
            entry.function = entry.args = None  # what it held goes at once
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry.function is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def due(self) -> list[tuple[Callable[..., object], tuple[Any, ...]]]:
        """Take the calls whose time has come (the caller holds no lock)."""
        now = self._clock()
        taken = []
        with self._condition:
            heap = self._heap
            while heap and heap[0].at <= now:
                entry = heapq.heappop(heap)
                entry.owner = None
                if entry.function is None or entry.args is None:
                    self._cancelled -= 1
                else:
                    taken.append((entry.function, entry.args))
                    entry.function = entry.args = None
        return taken

    def run(self) -> None:
        """The thread's loop: wait for the earliest deadline, run what is due (forever: a daemon thread)."""
        while True:
            for function, args in self.due():
                try:
                    function(*args)
                except Exception:
                    log.exception("ws.expire: a deadline's callback failed")
            with self._condition:
                wait = self._heap[0].at - self._clock() if self._heap else None
                if wait is None or wait > 0:
                    self._condition.wait(wait)


#: A forked child has no heap thread: it starts its own on first use.
_timers: PerProcess[Timers] = PerProcess(lambda: GeventTimers() if gevent_patched() else ThreadTimers(), fresh_after_fork=True)


def timers() -> Timers:
    """This process's timers: gevent's watchers when gevent has patched threading, else the one heap thread."""
    return _timers.get()


def deadline_of(when: float | datetime.datetime | None) -> float | None:
    """``when`` as a POSIX timestamp: a number is one (a JWT's ``exp``), a datetime must be aware."""
    if when is None:
        return None
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidArgument("close_at: a naive datetime is ambiguous; give an aware one (datetime.now(timezone.utc) + ...)")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise InvalidArgument(f"close_at: when must be a POSIX timestamp or an aware datetime, not {when!r}")
    return float(when)


class Expiry:
    """A connection's deadline: when (POSIX time), with what code and reason, and its armed timer."""

    __slots__ = ("code", "handle", "reason", "watched", "when")

    def __init__(self, when: float, code: int, reason: str) -> None:
        self.when = when
        self.code = code
        self.reason = reason
        self.handle: Timer | None = None  # the armed timer, once accepted
        self.watched = False  # on_finish registered: the timer goes when the connection ends

    def disarm(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()


def close_at(ws: Expiring, when: float | datetime.datetime | None, code: int = DEFAULT_CODE, reason: str = DEFAULT_REASON) -> None:
    """Close ``ws`` with ``code`` and ``reason`` at wall-clock time ``when`` (see :meth:`ConnectionInfo.close_at`)."""
    deadline = deadline_of(when)
    if deadline is not None:
        code = int(code)
        if code not in EXTERNAL_CLOSE_CODES and not 3000 <= code < 5000:
            raise InvalidArgument(f"close_at: close code {code} may not be sent (RFC 6455 §7.4)")
        if len(reason.encode("utf-8")) > 123:
            raise InvalidArgument("close_at: a close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)")
    expiry = getattr(ws, "_expiry", None)
    if expiry is not None:
        expiry.disarm()
    if deadline is None:
        ws._expiry = None
        return
    ws._expiry = expiry = Expiry(deadline, code, reason)
    if ws.accepted:
        _arm(ws, expiry)
    else:
        _arm_on_accept(ws)


def _arm_on_accept(ws: Expiring) -> None:
    """Arm the deadline once the 101 is sent: after the server's own registration (it is called first)."""
    previous = ws._on_accept
    if getattr(previous, "_arms_expiry", False):
        return  # close_at before accept, again: the hook is there and reads the newest deadline

    def on_accept(accepted: Any) -> None:
        if previous is not None:
            previous(accepted)
        expiry = ws._expiry
        if expiry is not None:
            _arm(ws, expiry)

    on_accept._arms_expiry = True  # type: ignore[attr-defined]
    ws._on_accept = on_accept


def _arm(ws: Expiring, expiry: Expiry) -> None:
    if ws.closed:
        return
    if not expiry.watched:
        expiry.watched = True
        ws.on_finish(functools.partial(_ended, ws))
    expiry.handle = timers().schedule(expiry.when - time.time(), _fire, ws, expiry)


def _ended(ws: Expiring) -> None:
    expiry = ws._expiry
    if expiry is not None:
        expiry.disarm()
        ws._expiry = None


def _fire(ws: Expiring, expiry: Expiry) -> None:
    """The timer is due (in the event loop or the heap thread): close in the background, never here."""
    expiry.handle = None
    if ws._expiry is expiry:
        spawn_background(_expire, ws, expiry)


def _expire(ws: Expiring, expiry: Expiry) -> None:
    if ws._expiry is not expiry or ws.closed:
        return  # replaced, cancelled, or the connection closed meanwhile
    early = expiry.when - time.time()
    if early > 0.001:  # the wall clock was set back since the timer was armed: wait for it
        _arm(ws, expiry)
        return
    ws._expiry = None
    log.info("ws.expire path=%s peer=%s: the credentials expired; closing with %d", ws.path, ws.peer, expiry.code)
    with contextlib.suppress(OSError):  # closed meanwhile: every error of ours is an OSError
        ws.close(expiry.code, expiry.reason)
