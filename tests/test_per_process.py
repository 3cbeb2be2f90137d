"""PerProcess: made once on first use, even when threads race; made afresh in a forked child when asked."""

from __future__ import annotations

import os
import threading

import pytest

from wsgi_ws.per_process import PerProcess

pytestmark = pytest.mark.unit


def test_nothing_is_made_before_the_first_get_and_then_only_once() -> None:
    made: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    value = PerProcess(make)
    assert made == []
    first = value.get()
    assert value.get() is first and made == [first]


@pytest.mark.timeout(30)
def test_threads_racing_for_the_first_get_share_one_value() -> None:
    started = threading.Barrier(8)
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def make() -> object:
        calls.append(1)
        entered.set()
        release.wait(5)  # still making while the others arrive
        return object()

    value = PerProcess(make)
    seen: list[object] = []

    def get() -> None:
        started.wait(5)
        seen.append(value.get())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert entered.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1 and len(seen) == 8 and all(s is seen[0] for s in seen)


@pytest.mark.timeout(30)
def test_a_forked_child_makes_its_own_when_asked_to() -> None:
    fresh = PerProcess(lambda: os.getpid(), fresh_after_fork=True)
    kept = PerProcess(lambda: os.getpid())
    parent = os.getpid()
    assert fresh.get() == kept.get() == parent
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's report goes through the pipe
        os.write(write, f"{fresh.get()} {kept.get()}".encode())
        os._exit(0)
    os.close(write)
    report = os.read(read, 100).decode().split()
    os.waitpid(child, 0)
    os.close(read)
    assert report == [str(child), str(parent)]
