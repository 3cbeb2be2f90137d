"""Counters of one process: connections, messages and bytes each way; read them with :func:`snapshot`.

They are kept cheaply: every connection counts its own messages and bytes, and adds them to the process totals
when it ends; :func:`snapshot` adds the live connections' counts to those totals. The sample app serves them as JSON
at ``/stats``; anything else can read them, or the log lines (``ws.accept``, ``ws.refuse``, ``ws.close``,
``ws.timeout``), through Python's logging.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["Counted", "add_source", "closed", "limited", "opened", "refused", "snapshot"]


class Counted(Protocol):
    """What a connection counts for itself (``WebSocket`` does): messages and bytes each way."""

    @property
    def messages_received(self) -> int: ...
    @property
    def messages_sent(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...


_lock = threading.Lock()
_live: weakref.WeakSet[Counted] = weakref.WeakSet()
_sources: list[Callable[[], Mapping[str, int]]] = []
_totals = {"accepted": 0, "refused": 0, "limited": 0, "closed": 0, "messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0}


def opened(ws: Counted) -> None:
    """A connection was accepted."""
    with _lock:
        _live.add(ws)
        _totals["accepted"] += 1


def refused() -> None:
    """An upgrade request was refused (origin, handshake, capacity)."""
    with _lock:
        _totals["refused"] += 1


def limited() -> None:
    """An upgrade request was refused by a per-IP limit (429): counted as ``refused`` and ``limited``."""
    with _lock:
        _totals["refused"] += 1
        _totals["limited"] += 1


def closed(ws: Counted) -> None:
    """A connection ended: fold its counts into the totals."""
    with _lock:
        if ws in _live:
            _live.discard(ws)
            _totals["closed"] += 1
            _totals["messages_in"] += ws.messages_received
            _totals["messages_out"] += ws.messages_sent
            _totals["bytes_in"] += ws.bytes_received
            _totals["bytes_out"] += ws.bytes_sent


def add_source(source: Callable[[], Mapping[str, int]]) -> None:
    """Have :func:`snapshot` include the counters ``source()`` returns (the hub's, which counts for itself)."""
    with _lock:
        _sources.append(source)


def snapshot() -> dict[str, int]:
    """Open connections now, and totals since the process started (live connections included)."""
    with _lock:
        live = list(_live)
        result = dict(_totals)
    result["open"] = len(live)
    for source in _sources:
        result.update(source())
    for ws in live:
        result["messages_in"] += ws.messages_received
        result["messages_out"] += ws.messages_sent
        result["bytes_in"] += ws.bytes_received
        result["bytes_out"] += ws.bytes_sent
    return result
