"""ws.close_at over a socketpair with real threads, the process's heap thread, and gevent's timer watchers."""

from __future__ import annotations

import datetime
import gc
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.constants import TIMEOUT
from tests.test_websocket import REQUEST, Peer
from tests.waiting import wait_until
from tests.wsclient import OP_CLOSE, Frame
from wsgi_ws.connection import expiry
from wsgi_ws.connection.keepalive import ConnectionMonitor
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.exceptions import InvalidArgument
from wsgi_ws.integrations.handler import finish
from wsgi_ws.options import WebSocketOptions

pytestmark = pytest.mark.socket

Make = Callable[..., tuple[WebSocket, Peer]]


@pytest.fixture
def pair() -> Iterator[Make]:
    made: list[socket.socket] = []

    def make(on_accept: Callable[[WebSocket], object] | None = None) -> tuple[WebSocket, Peer]:
        server, client = socket.socketpair()
        made.extend((server, client))
        ws = WebSocket(server, {"PATH_INFO": "/t"}, REQUEST, WebSocketOptions(close_timeout=TIMEOUT), on_accept=on_accept)
        return ws, Peer(client)

    yield make
    for sock in made:
        sock.close()


def heap() -> expiry.ThreadTimers:
    """This process's timers: the heap thread (pytest does not patch threading)."""
    timers = expiry.timers()
    assert isinstance(timers, expiry.ThreadTimers)
    return timers


def closing_frame(peer: Peer) -> tuple[Frame, float]:
    """Read up to the server's close frame and answer it; the frame and when it came (wall clock)."""
    while True:
        frame = peer.read_frame()
        assert frame is not None, "EOF before a close frame"
        if frame.opcode == OP_CLOSE:
            arrived = time.time()
            peer.send_frame(OP_CLOSE, frame.payload)
            return frame, arrived


def code_and_reason(frame: Frame) -> tuple[int, str]:
    return struct.unpack("!H", frame.payload[:2])[0], frame.payload[2:].decode()


def receiving(ws: WebSocket) -> tuple[threading.Thread, list[Any]]:
    """The handler, blocked in receive() in its own thread, as under gthread or flask run."""
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(ws.receive()), daemon=True)
    thread.start()
    return thread, got


@pytest.mark.timeout(30)
def test_after_accept_it_closes_with_1008_at_the_deadline_and_never_before(pair: Make) -> None:
    ws, peer = pair()
    ws.accept()
    peer.read_response()
    thread, got = receiving(ws)
    deadline = time.time() + 0.3
    ws.close_at(deadline)
    frame, arrived = closing_frame(peer)
    assert code_and_reason(frame) == (1008, "authentication expired")
    assert arrived >= deadline - 0.002, f"{deadline - arrived:.3f} s early"
    assert arrived < deadline + TIMEOUT
    thread.join(TIMEOUT)
    assert got == [None] and ws.close_code == 1008, "the handler's receive() ends"


@pytest.mark.timeout(30)
def test_before_accept_it_applies_once_accepted_and_a_past_deadline_closes_at_once(pair: Make) -> None:
    registered: list[WebSocket] = []
    ws, peer = pair(on_accept=registered.append)
    ws.close_at(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5), 4001, "token expired")
    assert registered == [] and not ws.accepted, "nothing happens before accept"
    started = time.monotonic()
    ws.accept()
    assert registered == [ws], "the server's own registration still runs"
    assert peer.read_response().status == 101
    frame, _ = closing_frame(peer)
    assert code_and_reason(frame) == (4001, "token expired")
    assert time.monotonic() - started < TIMEOUT / 2


@pytest.mark.timeout(30)
def test_calling_it_again_replaces_the_deadline_and_none_cancels_it(pair: Make) -> None:
    ws, peer = pair()
    ws.accept()
    peer.read_response()
    waiting = len(heap())
    ws.close_at(time.time() + 0.2)
    later = time.time() + 0.6
    ws.close_at(later, reason="refreshed token expired")  # before the first deadline: it replaces it
    assert len(heap()) == waiting + 1, "one deadline per connection"
    frame, arrived = closing_frame(peer)
    assert code_and_reason(frame) == (1008, "refreshed token expired")
    assert arrived >= later - 0.002, "the first deadline was dropped"
    other, _ = pair()
    other.accept()
    other.close_at(time.time() + 3600)
    other.close_at(None)
    assert len(heap()) == waiting and not other.closed


@pytest.mark.timeout(30)
def test_the_deadline_goes_when_the_connection_ends_and_holds_nothing_alive(pair: Make) -> None:
    ws, peer = pair()
    ws.accept()
    peer.read_response()
    waiting = len(heap())
    ws.close_at(time.time() + 3600)
    assert len(heap()) == waiting + 1
    peer.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    assert ws.receive() is None
    peer.sock.shutdown(socket.SHUT_WR)  # the client's end of TCP: the server stops lingering at once
    finish(ws, ConnectionMonitor(lambda *args: None))
    assert len(heap()) == waiting, "cancelled when the connection ended"
    gone = weakref.ref(ws)
    del ws
    gc.collect()
    assert gone() is None, "the heap keeps no reference to an ended connection"


@pytest.mark.timeout(10)
def test_bad_arguments_are_refused_at_once(pair: Make) -> None:
    ws, _ = pair()
    for when in (datetime.datetime(2030, 1, 1), True, float("nan"), float("inf"), "tomorrow"):
        with pytest.raises(InvalidArgument):
            ws.close_at(when)  # type: ignore[arg-type]
    for code in (999, 1005, 1006, 1015, 2999, 5000):
        with pytest.raises(InvalidArgument, match="may not be sent"):
            ws.close_at(time.time() + 60, code)
    with pytest.raises(InvalidArgument, match="123 bytes"):
        ws.close_at(time.time() + 60, reason="x" * 124)
    aware = datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert expiry.deadline_of(aware) == datetime.datetime(2030, 1, 1, 10, tzinfo=datetime.timezone.utc).timestamp()
    assert expiry.deadline_of(1_900_000_000) == 1_900_000_000.0


@pytest.mark.timeout(10)
def test_a_wall_clock_set_back_rearms_instead_of_closing_early(monkeypatch: pytest.MonkeyPatch, pair: Make) -> None:
    ws, peer = pair()
    ws.accept()
    peer.read_response()
    armed: list[float] = []

    class Recording:
        def schedule(self, delay: float, function: Callable[..., object], *args: Any) -> expiry.Timer:
            armed.append(delay)
            return Nothing()

    class Nothing:
        def close(self) -> None:
            pass

    recording = Recording()
    monkeypatch.setattr(expiry, "timers", lambda: recording)
    when = time.time() + 100
    ws.close_at(when)
    entry = ws._expiry
    assert entry is not None and 99 < armed[0] <= 100
    expiry._expire(ws, entry)  # the timer fired, but the wall clock says 100 s remain
    assert len(armed) == 2 and 99 < armed[1] <= 100 and not ws.closed


@pytest.mark.timeout(10)
def test_the_heap_thread_runs_the_earliest_first_wakes_for_an_earlier_one_and_compacts_cancelled_ones() -> None:
    timers = expiry.ThreadTimers()
    fired: list[str] = []
    timers.schedule(3600, lambda: fired.append("late"))
    wait_until(lambda: timers._condition._waiters, "the heap thread waits for the late deadline")  # type: ignore[attr-defined]
    started = time.monotonic()
    timers.schedule(0.05, lambda: fired.append("soon"))  # earlier than what the thread waits for: it wakes
    timers.schedule(0.02, lambda: fired.append("sooner"))
    wait_until(lambda: fired == ["sooner", "soon"], "the two due callbacks ran, in order")
    assert time.monotonic() - started < TIMEOUT / 2
    entries = [timers.schedule(3600, fired.append, "never") for _ in range(200)]
    for entry in entries[:150]:
        entry.close()
        entry.close()  # twice is harmless
    assert len(timers) == 51 and len(timers._heap) < 120, "cancelled entries are dropped in bulk"


@pytest.mark.timeout(10)
def test_gevent_timers_fire_once_and_cancel() -> None:
    gevent = pytest.importorskip("gevent")
    timers = expiry.GeventTimers()
    fired: list[str] = []
    timers.schedule(0.02, fired.append, "due")
    timers.schedule(-1, fired.append, "past")
    timers.schedule(0.02, fired.append, "cancelled").close()
    deadline = time.monotonic() + TIMEOUT
    while len(fired) < 2 and time.monotonic() < deadline:
        gevent.sleep(0.01)  # runs the event loop, where the watchers fire
    gevent.sleep(0.05)
    assert fired == ["past", "due"]
