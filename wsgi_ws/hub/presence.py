"""Presence: who is in a group, across every worker on every machine (in memory for one process, or in Redis).

Redis design (one server, not a Cluster: MGET and the scripts touch keys of several slots), a few commands per change:

* ``wsgi_ws:presence:<group>``: a hash, field = connection id, value = JSON ``{"user", "worker", "joined"}``, expiring a
  day after the last add (the heartbeat of each worker with entries refreshes it every 6 h): abandoned groups vanish.
* ``wsgi_ws:alive:<worker>``: ``SET ... PX`` 1.5 x heartbeat every half heartbeat, one command per worker however many
  entries it has: a SIGKILLed worker's entries are dead within 1.5 x heartbeat (a live one survives two missed ticks).
* :meth:`~RedisPresence.members` reads the hash, then the alive keys of the workers it names (one MGET), and leaves out
  dead workers' entries; a Lua script deletes each only if its alive key is still missing and its value unchanged, and
  only then PUBLISHes the "leave": announced once however many workers reap, never for a worker back in time.
* Events, JSON ``{"kind", "connection", "user", "worker", "joined"}``, go to ``wsgi_ws.presence:<group>`` from
  the script that did the HSET or HDEL, so only real changes are announced; a watching worker holds the channel on its
  own pub/sub connection (:class:`~wsgi_ws.hub.redis_backend.Subscriptions`: one reader, reconnecting with back-off).
* The reaper: every half heartbeat each worker runs that clean-up over the groups it watches or has entries in (one
  pipeline of HGETALLs, one MGET; never KEYS or SCAN): watchers hear a dead worker's leaves within 2 x heartbeat.

When Redis fails, add/remove log a warning (once per outage) and never raise: the worker keeps its entries in memory,
adds them again and retries failed removals once Redis answers (after an empty restart its entries are back within a
heartbeat, with a "join" each). Events published while a watcher was away are lost: call ``members()`` after that.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    import redis

__all__ = ["ALIVE_PREFIX", "EVENTS_PREFIX", "KEY_PREFIX", "MemoryPresence", "Presence", "PresenceEntry", "RedisPresence", "worker_id"]

log = logging.getLogger("wsgi_ws")

#: A group's hash is KEY_PREFIX + group, its events' channel EVENTS_PREFIX + group; a worker's alive key ALIVE_PREFIX + worker.
KEY_PREFIX, ALIVE_PREFIX = "wsgi_ws:presence:", "wsgi_ws:alive:"
EVENTS_PREFIX = "wsgi_ws.presence:"  # not "wsgi_ws:": no hub group's channel can be one of these
GROUP_TTL = 86400.0  #: seconds a group's hash lives after the last add (or the heartbeat's refresh, every quarter of it)
WATCH_WAIT = 5.0  #: seconds :meth:`RedisPresence.watch` waits for the server to confirm the subscription

# KEYS[1] the hash; ARGV: field, value, hash expiry (ms), channel, join event.
_ADD = """
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
"""
# KEYS[1] the hash, KEYS[2] (reaping only) the owner's alive key; ARGV: channel, field, expected value ('': any), leave.
_DELETE = """
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local value = redis.call('HGET', KEYS[1], ARGV[2])
if not value or (ARGV[3] ~= '' and value ~= ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2]); redis.call('PUBLISH', ARGV[1], ARGV[4])
return 1
"""


class PresenceEntry(NamedTuple):
    """One connection in one group, as every worker sees it."""

    connection: str  #: the connection's id: opaque, unique per connection (the key of the entry in its group)
    user: str | None  #: the user the app named, or None
    worker: str  #: the id of the worker holding the connection (see :func:`worker_id`)
    joined: float  #: ``time.time()`` when it was added


#: ``on_event(kind, group, entry)``: kind is "join" or "leave".
OnEvent = Callable[[str, str, PresenceEntry], None]
Spawn = Callable[..., Any]  #: ``spawn(f, *args)`` runs ``f`` in the background
Sleep = Callable[[float], Any]
_Take = tuple[str, PresenceEntry, str, bytes | str]  # group, entry, and the checks of RedisPresence._take: alive key, value


class Presence(Protocol):
    """Who is in which group, in every worker; :class:`MemoryPresence` and :class:`RedisPresence`."""

    def start(self, on_event: OnEvent) -> None:
        """Begin: ``on_event(kind, group, entry)`` from now on gets the events, from any worker, of watched groups."""

    def add(self, group: str, entry: PresenceEntry) -> None:
        """Put ``entry`` in ``group`` (a "join" if its connection was not there yet); never raises."""

    def remove(self, group: str, entry: PresenceEntry) -> None:
        """Take ``entry``'s connection out of ``group`` (a "leave" if it was there); never raises."""

    def members(self, group: str) -> list[PresenceEntry]:
        """The entries of ``group`` of every live worker, oldest first (Redis: may raise ``redis.RedisError``)."""

    def watch(self, group: str) -> None:
        """Deliver ``group``'s events to ``on_event``; calls nest: watched until as many :meth:`unwatch` calls."""

    def unwatch(self, group: str) -> None:
        """Undo one :meth:`watch`."""

    def stop(self) -> None:
        """Clean exit: this worker's entries are removed and its events stop; do not use the object afterwards."""


def worker_id() -> str:
    """A worker id for this process, unique across machines and restarts: ``hostname:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _ordered(entries: Iterable[PresenceEntry]) -> list[PresenceEntry]:
    return sorted(entries, key=lambda entry: (entry.joined, entry.connection))


def _deliver(on_event: OnEvent, kind: str, group: str, entry: PresenceEntry) -> None:
    try:
        on_event(kind, group, entry)
    except Exception:
        log.exception("presence: the on_event callback failed for a %s in group %r", kind, group)


class MemoryPresence:
    """Presence in one process (a dict): for one worker, and tests. ``on_event`` runs synchronously, in the thread
    that called :meth:`add` or :meth:`remove`, for the watched groups; :meth:`stop` forgets everything silently."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, PresenceEntry]] = {}
        self._watched: dict[str, int] = {}
        self._on_event: OnEvent | None = None
        self._lock = threading.Lock()

    def start(self, on_event: OnEvent) -> None:
        """Deliver the events of watched groups to ``on_event`` from now on."""
        self._on_event = on_event

    def add(self, group: str, entry: PresenceEntry) -> None:
        """Put ``entry`` in ``group``; a "join" if its connection was not in it yet (re-adding replaces the entry)."""
        with self._lock:
            entries = self._groups.setdefault(group, {})
            new = entry.connection not in entries
            entries[entry.connection] = entry
        if new:
            self._emit("join", group, entry)

    def remove(self, group: str, entry: PresenceEntry) -> None:
        """Take ``entry``'s connection out of ``group``; a "leave" (with the stored entry) if it was there."""
        with self._lock:
            entries = self._groups.get(group, {})
            gone = entries.pop(entry.connection, None)
            if not entries:
                self._groups.pop(group, None)
        if gone is not None:
            self._emit("leave", group, gone)

    def members(self, group: str) -> list[PresenceEntry]:
        """The entries of ``group``, oldest first."""
        with self._lock:
            return _ordered(self._groups.get(group, {}).values())

    def watch(self, group: str) -> None:
        """Deliver ``group``'s events; calls nest."""
        with self._lock:
            self._watched[group] = self._watched.get(group, 0) + 1

    def unwatch(self, group: str) -> None:
        """Undo one :meth:`watch`."""
        with self._lock:
            count = self._watched.pop(group, 0) - 1
            if count > 0:
                self._watched[group] = count

    def stop(self) -> None:
        """Forget every entry, without events."""
        with self._lock:
            self._groups.clear()
            self._watched.clear()

    def _emit(self, kind: str, group: str, entry: PresenceEntry) -> None:
        on_event = self._on_event
        if on_event is not None and group in self._watched:
            _deliver(on_event, kind, group, entry)


def _entry(connection: str, data: dict[str, Any]) -> PresenceEntry:
    return PresenceEntry(connection, None if data["user"] is None else str(data["user"]), str(data["worker"]), float(data["joined"]))


def _json(entry: PresenceEntry, kind: str = "") -> str:
    event = {"kind": kind, "connection": entry.connection} if kind else {}
    return json.dumps({**event, "user": entry.user, "worker": entry.worker, "joined": entry.joined}, separators=(",", ":"))


class RedisPresence:
    """Presence in Redis for one worker (the module's docstring tells how). ``client``: this worker's ``redis.Redis``
    (one server, ``decode_responses=False``; its retry policy sets how long a call lasts while Redis is down).
    ``worker``: its id (:func:`worker_id`). ``spawn(f)`` runs the heartbeat and the events' reader in the background (a
    greenlet under gevent, a thread otherwise); ``sleep`` is theirs. ``heartbeat`` in seconds: a dead worker's entries
    vanish within twice that. Call :meth:`start` before :meth:`add`, and :meth:`stop` at a clean exit."""

    def __init__(self, client: redis.Redis, worker: str, spawn: Spawn, sleep: Sleep = time.sleep, heartbeat: float = 10.0) -> None:
        import redis  # the redis extra is needed only here

        from .redis_backend import Subscriptions

        self.worker, self.heartbeat = worker, heartbeat
        self._client, self._spawn, self._sleep = client, spawn, sleep
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        where = client.connection_pool.connection_kwargs
        self.label = str(where.get("path") or f"{where.get('host', 'localhost')}:{where.get('port', 6379)}")
        # The alive key lives 1.5 heartbeats and is refreshed every half: a live worker survives two missed ticks, and
        # a dead one's key is gone within 1.5 heartbeats and reaped within half a heartbeat more: 2 in all.
        self._alive, self._alive_ms = ALIVE_PREFIX + worker, max(1, round(1500 * heartbeat))
        self._add, self._delete = client.register_script(_ADD), client.register_script(_DELETE)
        self._subscriptions = Subscriptions(client, f"{self.label} (presence events)", self._arrived, spawn, sleep)
        self._lock = threading.Lock()  # the state below
        self._own: dict[str, dict[str, PresenceEntry]] = {}  # this worker's entries, to add again after an outage
        self._unremoved: dict[tuple[str, str], PresenceEntry] = {}  # removals that failed, to retry
        self._watched: dict[str, int] = {}
        self._on_event: OnEvent | None = None
        self._dirty = False  # a write failed: Redis may not hold what this worker holds
        self._lost_at: float | None = None  # when the current outage began (it is logged once)
        self._synced_at = time.monotonic()
        self._stopped = False

    def start(self, on_event: OnEvent) -> None:
        """Mark this worker alive (one heartbeat now) and start the heartbeat; deliver the watched groups' events to
        ``on_event(kind, group, entry)``, from every worker this one included, in the reader (it must not block long)."""
        self._on_event = on_event
        self._tick()
        self._spawn(self._beat)

    def add(self, group: str, entry: PresenceEntry) -> None:
        """Put ``entry`` in ``group`` (watchers get a "join" if its connection was not in it); refreshes the group's
        expiry. Never raises: if Redis fails it logs a warning (once per outage) and the heartbeat adds it later."""
        if self._stopped:
            return
        with self._lock:
            self._own.setdefault(group, {})[entry.connection] = entry
            self._unremoved.pop((group, entry.connection), None)
        try:
            self._put(self._client, group, entry)
        except self._errors as exc:
            self._failed(exc)

    def remove(self, group: str, entry: PresenceEntry) -> None:
        """Take ``entry``'s connection out of ``group`` (watchers get a "leave" if it was there). Never raises: if
        Redis fails it logs a warning (once per outage) and the heartbeat retries the removal."""
        with self._lock:
            if self._own.get(group, {}).pop(entry.connection, None) is not None and not self._own[group]:
                del self._own[group]
        try:
            self._take(self._client, group, entry)
        except self._errors as exc:
            with self._lock:
                self._unremoved[(group, entry.connection)] = entry
            self._failed(exc)

    def members(self, group: str) -> list[PresenceEntry]:
        """The entries of ``group`` of every live worker, oldest first; dead workers' entries are deleted (watchers
        get their "leave"). Two or three round trips. Raises ``redis.RedisError`` when Redis cannot be reached."""
        return self._live([group])[group]

    def watch(self, group: str) -> None:
        """Deliver ``group``'s events to ``on_event``; calls nest. The first call returns once the server confirmed
        the subscription, or after 5 s with a warning (it then subscribes as soon as Redis is back)."""
        with self._lock:
            count = self._watched[group] = self._watched.get(group, 0) + 1
            ready = self._subscriptions.want(EVENTS_PREFIX + group) if count == 1 else None
        if ready is not None and not ready.wait(WATCH_WAIT):
            log.warning("presence: not subscribed to the events of group %r yet; they are lost until it is", group)

    def unwatch(self, group: str) -> None:
        """Undo one :meth:`watch`; the last one unsubscribes."""
        with self._lock:
            count = self._watched.pop(group, 0) - 1
            if count > 0:
                self._watched[group] = count
            elif count == 0:
                self._subscriptions.drop(EVENTS_PREFIX + group)

    def stop(self) -> None:
        """Clean exit: delete this worker's entries (watchers get their "leave") and its alive key, stop the heartbeat
        and the events. If Redis fails it logs a warning: the entries then vanish within 2 x heartbeat, as a dead
        worker's do. Do not use the object afterwards."""
        with self._lock:
            self._stopped = True
            gone = [(group, entry, "", "") for group, entries in self._own.items() for entry in entries.values()]
            gone += [(group, entry, "", "") for (group, _), entry in self._unremoved.items()]
            self._own, self._unremoved = {}, {}
            for group in self._watched:
                self._subscriptions.drop(EVENTS_PREFIX + group)
            self._watched.clear()
            self._subscriptions.stopping = True
        try:
            self._batch([], gone, self._alive)
        except self._errors as exc:
            log.warning("presence: could not remove this worker's entries from Redis at %s (%s)", self.label, exc)

    def _put(self, client: Any, group: str, entry: PresenceEntry) -> None:
        args: list[str | int] = [entry.connection, _json(entry), round(GROUP_TTL * 1000), EVENTS_PREFIX + group, _json(entry, "join")]
        self._add(keys=[KEY_PREFIX + group], args=args, client=client)

    def _take(self, client: Any, group: str, entry: PresenceEntry, alive: str = "", value: bytes | str = "") -> None:
        keys = [KEY_PREFIX + group, alive] if alive else [KEY_PREFIX + group]
        self._delete(keys=keys, args=[EVENTS_PREFIX + group, entry.connection, value, _json(entry, "leave")], client=client)

    def _batch(self, puts: Sequence[tuple[str, PresenceEntry]], takes: Sequence[_Take], *delete: str) -> None:
        """Adds, then deletes (with the checks of :meth:`_take`), then DELs, in one pipeline (raises redis.RedisError)."""
        pipe = self._client.pipeline(transaction=False)
        for group, entry in puts:
            self._put(pipe, group, entry)
        for group, entry, alive, value in takes:
            self._take(pipe, group, entry, alive, value)
        if delete:
            pipe.delete(*delete)
        pipe.execute()

    def _live(self, groups: list[str]) -> dict[str, list[PresenceEntry]]:
        """The live entries of each group; the dead workers' ones are reaped (raises redis.RedisError)."""
        pipe = self._client.pipeline(transaction=False)
        for group in groups:
            pipe.hgetall(KEY_PREFIX + group)
        found: dict[str, list[tuple[PresenceEntry, bytes | str]]] = {}
        for group, fields in zip(groups, pipe.execute(), strict=True):
            found[group] = items = []
            for field, raw in fields.items():
                try:
                    items.append((_entry(field.decode() if isinstance(field, bytes) else field, json.loads(raw)), raw))
                except (ValueError, KeyError, TypeError):
                    continue  # not ours to judge: left alone
        workers = sorted({entry.worker for items in found.values() for entry, _ in items} - {self.worker})
        alive = self._client.mget([ALIVE_PREFIX + worker for worker in workers]) if workers else []
        dead = {worker for worker, mark in zip(workers, alive, strict=True) if mark is None}
        takes = [(g, entry, ALIVE_PREFIX + entry.worker, raw) for g, items in found.items() for entry, raw in items if entry.worker in dead]
        if takes:
            self._batch([], takes)
        return {group: _ordered(entry for entry, _ in items if entry.worker not in dead) for group, items in found.items()}

    def _beat(self) -> None:
        while not self._stopped:
            self._sleep(self.heartbeat / 2)
            self._tick()

    def _tick(self) -> None:
        """One heartbeat: refresh the alive key, add this worker's entries again if Redis lost them, reap."""
        try:
            if self._stopped:
                return
            was = self._client.set(self._alive, b"1", px=self._alive_ms, get=True)
            if was is None or self._dirty or time.monotonic() - self._synced_at > GROUP_TTL / 4:
                self._resync()
            with self._lock:
                groups = sorted(set(self._watched) | set(self._own))
            if groups:
                self._live(groups)
        except self._errors as exc:
            self._failed(exc)
            return
        except Exception:
            log.exception("presence: the heartbeat failed; it carries on")
            return
        if self._lost_at is not None:
            log.warning("presence: Redis at %s is back after %.1f s", self.label, time.monotonic() - self._lost_at)
            self._lost_at = None

    def _resync(self) -> None:
        """Add every entry of this worker again (a no-op, but for the expiry, for those still there); retry removals."""
        with self._lock:
            self._dirty = False
            own = [(group, entry) for group, entries in self._own.items() for entry in entries.values()]
            unremoved, self._unremoved = self._unremoved, {}
        try:
            self._batch(own, [(group, entry, "", "") for (group, _), entry in unremoved.items()])
        except BaseException:
            with self._lock:
                self._dirty, self._unremoved = True, {**unremoved, **self._unremoved}
            raise
        self._synced_at = time.monotonic()
        with self._lock:  # removed while this ran: its HSET may have come after the removal's HDEL
            stale = [(group, entry) for group, entry in own if entry.connection not in self._own.get(group, {})]
        if stale:
            self._batch([], [(group, entry, "", "") for group, entry in stale])

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._dirty, first = True, self._lost_at is None
            self._lost_at = time.monotonic() if first else self._lost_at
        if first:
            log.warning("presence: Redis at %s failed (%s); this worker adds its entries again once it is back", self.label, exc)

    def _arrived(self, channel: str, payload: bytes) -> None:
        """An event from the reader: to ``on_event`` if its group is still watched."""
        group = channel[len(EVENTS_PREFIX) :]
        on_event = self._on_event
        if on_event is None or not channel.startswith(EVENTS_PREFIX) or group not in self._watched:
            return
        try:
            data = json.loads(payload)
            kind, entry = {"join": "join", "leave": "leave"}[data["kind"]], _entry(str(data["connection"]), data)
        except (ValueError, KeyError, TypeError):
            log.warning("presence: ignoring a malformed event on %s", channel)
            return
        _deliver(on_event, kind, group, entry)
