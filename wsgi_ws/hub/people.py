"""The hub's people: users (all of one user's connections, on every worker) and presence (who is in a group).

Mixed into :class:`~wsgi_ws.hub.hub.Hub`. A user's connections are members of a hidden group named
``USER_GROUP + user``: :meth:`People.send_to_user` publishes to it and :meth:`People.disconnect_user` publishes a
request to close that every worker carries out for its own connections of the user. Presence entries are kept by a
:class:`~wsgi_ws.hub.presence.Presence` (Redis with a hub URL, else this process's memory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..connection.websocket import WebSocket
from ..protocol.assembler import Message
from ..protocol.session import CloseCode
from .backends import Backend, CloseRequest
from .presence import ALIVE_PREFIX, MemoryPresence, Presence, PresenceEntry, RedisPresence

if TYPE_CHECKING:
    from .member import Member

__all__ = ["USER_GROUP", "People", "PresenceCallback"]

#: Groups named USER_GROUP + user hold a user's connections (:meth:`People.identify`).
USER_GROUP = "\x00user:"
#: ``callback(kind, entry)`` with kind "join" or "leave": see :meth:`People.watch_presence`.
PresenceCallback = Callable[[str, PresenceEntry], object]


class People:
    """Users and presence, for the hub (``backend``, ``_spawn`` and ``join`` are the hub's)."""

    backend: Backend
    _spawn: Callable[..., Any]
    join: Callable[..., Any]

    def _people_init(self, presence: Presence | None, worker: str) -> None:
        self._presence = presence if presence is not None else MemoryPresence()
        self.worker = worker  #: this worker's id in presence entries
        self._presence_started = False
        self._presence_lock = threading.Lock()
        self._entries: dict[tuple[Member, str], PresenceEntry] = {}
        self._watchers: dict[str, dict[WebSocket, PresenceCallback]] = {}

    # Users.

    def identify(self, ws: WebSocket, user: str) -> None:
        """Name the user ``ws`` belongs to (also ``ws.user = ...`` before a :meth:`join`): :meth:`send_to_user` and
        :meth:`disconnect_user` reach it then, on every worker."""
        ws.user = user
        self.join(ws, USER_GROUP + user)

    def send_to_user(self, user: str, message: Message | bytearray | memoryview) -> int:
        """Send ``message`` to every connection of ``user`` on every worker; how many workers had some (0: none)."""
        return self.backend.publish(USER_GROUP + user, message)

    def disconnect_user(self, user: str, code: int = CloseCode.POLICY_VIOLATION, reason: str = "") -> int:
        """Close every connection of ``user`` on every worker with ``code`` and ``reason`` (each after the frame it is
        sending); how many workers had some."""
        return self.backend.publish(USER_GROUP + user, CloseRequest(int(code), reason))

    # Presence.

    def presence(self, group: str) -> list[PresenceEntry]:
        """Who is in ``group`` on every worker of every machine (connections that joined with ``presence=True``),
        oldest first: connection id, user, worker. With Redis it may raise ``redis.RedisError``."""
        self._start_presence()
        return self._presence.members(group)

    def watch_presence(self, ws: WebSocket, group: str, callback: PresenceCallback) -> None:
        """Call ``callback(kind, entry)`` ("join" or "leave") for every change in ``group``'s presence, on any worker,
        until ``ws`` ends. It runs in the background (its own greenlet or thread): sending on ``ws`` from it is fine."""
        self._start_presence()
        watchers = self._watchers.setdefault(group, {})
        if not watchers:
            self._presence.watch(group)
        if ws not in watchers:
            ws.on_finish(lambda: self._unwatch(ws, group))
        watchers[ws] = callback

    def _unwatch(self, ws: WebSocket, group: str) -> None:
        watchers = self._watchers.get(group)
        if watchers is not None and watchers.pop(ws, None) is not None and not watchers:
            del self._watchers[group]
            self._presence.unwatch(group)

    def _present(self, member: Member, group: str) -> None:
        """``member`` joined ``group`` with presence: it is listed until it leaves."""
        if (member, group) in self._entries:
            return
        self._start_presence()
        entry = PresenceEntry(member.token.hex(), member.ws.user, self.worker, time.time())
        self._entries[(member, group)] = entry
        self._presence.add(group, entry)

    def _absent(self, member: Member, group: str) -> None:
        entry = self._entries.pop((member, group), None)
        if entry is not None:
            self._presence.remove(group, entry)

    def alive_key(self) -> str | None:
        """Start this worker's presence heartbeat in Redis and return the key it keeps alive; None without Redis presence."""
        presence = self._presence
        if not isinstance(presence, RedisPresence):
            return None
        self._start_presence()
        return ALIVE_PREFIX + self.worker

    def _start_presence(self) -> None:
        if not self._presence_started:
            with self._presence_lock:
                if not self._presence_started:
                    self._presence.start(self._presence_event)
                    self._presence_started = True

    def _presence_event(self, kind: str, group: str, entry: PresenceEntry) -> None:
        for callback in list(self._watchers.get(group, {}).values()):
            self._spawn(callback, kind, entry)

    def stop_presence(self) -> None:
        """A clean exit: this worker's entries go at once (they would within twice the heartbeat anyway)."""
        if self._presence_started:
            self._presence.stop()
