"""Broadcast hub: named groups of connections, one message to all members, in one worker or across many.

::

    from wsgi_ws.hub import current_hub

    @sockets.route("/chat")
    def chat(ws):
        hub = current_hub()
        hub.join(ws, "lobby")                       # left again automatically when the connection ends
        for message in ws:
            hub.publish("lobby", message, exclude=ws)  # everyone else in the room

Backends: in memory (the default: zero set-up, members of the same worker process only) and Redis pub/sub (set
``hub_url``, for example ``WS_HUB_URL=redis://127.0.0.1:6379/0``), which reaches members in every worker on every
machine, and lets any Python process publish with :func:`publish` without being a web server. A worker subscribes to
a group's channel only while it has members of that group; with a Redis Cluster it uses sharded pub/sub.

Delivery is at most once and in order per publisher. Each published message is framed once per worker (compressed
once per set of permessage-deflate parameters, for connections that reset their context per message), and the
messages published since the last pass go to each member in one write (:mod:`wsgi_ws.hub.member`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ..connection.websocket import WebSocket
from ..protocol.assembler import Message
from .backends import Backend, CloseRequest, Published, Waitable
from .fanout import join_frames, offer_run
from .history import Delivery, History, Position, Recovery
from .member import Counters, Member, close_without_waiting
from .outgoing import Format, Notice, Outgoing, shape
from .people import USER_GROUP, People
from .presence import Presence, worker_id
from .recovery import Item, Tracks, missed_since, parse_since, read_history

__all__ = ["USER_GROUP", "Hub"]

#: Seconds :meth:`Hub.join` waits for the backend to confirm a new group's subscription.
SUBSCRIBE_WAIT = 5.0

log = logging.getLogger("wsgi_ws")


class Hub(People):
    """Groups of connections in this process, fed by a backend.

    ``spawn`` starts writers and closers in the background; ``defer`` runs the fan-out at the event loop's next
    turn, so that messages published meanwhile share its writes (None: each message fans out at once, in the
    publisher's thread).
    """

    def __init__(
        self,
        backend: Backend,
        spawn: Callable[..., Any],
        defer: Callable[[Callable[[], None]], object] | None = None,
        history: History | None = None,
        presence: Presence | None = None,
        worker: str = "",
    ) -> None:
        self.backend = backend
        self._people_init(presence, worker or worker_id())
        self._history_rules: list[tuple[str, History | None]] = [("*", history)]
        #: What this worker's hub has done (``/stats`` shows them as ``hub_*``).
        self.counters = Counters()
        self.tracks = Tracks(backend, self.history_for, self.counters)
        self._spawn = spawn
        self._defer = defer
        self._groups: dict[str, dict[Member, None]] = {}
        self._members: dict[WebSocket, Member] = {}
        self._subscribed: dict[str, Waitable] = {}  # per group: set once the backend delivers its messages
        self._pending: list[Item] = []
        self._scheduled = False
        self._started = False
        self._lock = threading.Lock()  # starting the backend; fan-out passes when there is no event loop

    # Membership.

    def join(
        self,
        ws: WebSocket,
        group: str,
        *,
        since: str | Position | None = None,
        render: Callable[[Delivery], Message] | None = None,
        announce: Callable[[Recovery], Message | None] | None = None,
        presence: bool = False,
    ) -> Recovery:
        """Add ``ws`` to ``group`` (accepting it if need be); it leaves every group when the connection ends.

        Returns once this worker receives the group's messages (with Redis: subscribed, or after 5 s with a warning).

        In a recoverable group (a history size set: ``hub_history_size`` or :meth:`set_history`) ``since`` is the
        position (:meth:`Position.token`) of the last message the client saw: it gets every message after it, then
        the live ones, none twice. ``render`` turns each message, with its position, into what is sent (for example
        :func:`wsgi_ws.hub.feed.render`); ``announce`` makes the message sent first, from the :class:`Recovery`.
        The returned :class:`Recovery` says whether everything since ``since`` could be recovered (False: some is
        gone, or ``since`` was not a position this group gave, or the group keeps no history).

        ``presence=True`` lists the connection in :meth:`presence` (with ``ws.user``) until it leaves the group.
        """
        if not self._started:
            with self._lock:
                if not self._started:
                    self.backend.start(self)
                    self._started = True
        if not ws.accepted:
            ws.accept()
        member = self._member(ws)
        if ws.user is not None and not group.startswith(USER_GROUP) and USER_GROUP + ws.user not in member.groups:
            self.identify(ws, ws.user)
        history = self.history_for(group)
        wanted, well_formed = parse_since(since)
        fmt = Format(render, announce) if render is not None or announce is not None else None
        if fmt is not None:
            member.formats[group] = fmt
        if history is not None:
            member.holding[group] = []
        member.groups.add(group)
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = {}
            self._subscribed[group] = self.backend.subscribe(group)
        members[member] = None
        if presence:
            self._present(member, group)
        if not self._subscribed[group].wait(SUBSCRIBE_WAIT):
            log.warning("hub: not subscribed to group %r yet; its messages are lost for this worker until it is", group)
        if history is None:
            recovery = Recovery(well_formed and wanted is None, 0, None)
            self._send_now(member, group, [Notice(group, recovery)])
            return recovery
        return self._resume(member, group, wanted if well_formed else Position("", 0), history)

    def _member(self, ws: WebSocket) -> Member:
        member = self._members.get(ws)
        if member is None:
            member = Member(ws, os.urandom(8), self.counters, self._spawn, self.leave_all, cooperative=self._defer is not None)
            self._members[ws] = member
            ws.on_finish(lambda: self._ended(ws))
        return member

    def _resume(self, member: Member, group: str, since: Position | None, history: History) -> Recovery:
        """Send a joining member what it missed since ``since``, then what was held back meanwhile; then it is live."""
        read = read_history(self.backend, group, since.offset if since is not None else 1 << 62, history)
        with self.tracks.lock, self._lock:  # no fan-out pass between taking what was held and going live
            if read is not None:
                self.tracks.start_at(group, read)
            recovery, items = missed_since(group, since, read, member.holding.pop(group, []))
            self._send_now(member, group, [Notice(group, recovery), *items])
            newest = next((item.position for item in reversed(items) if item.position is not None), recovery.position)
            if newest is not None:
                member.resumed_at[group] = newest  # messages already on their way to the next pass are not sent twice
        self.counters.replayed += recovery.missed
        return recovery

    def _send_now(self, member: Member, group: str, items: list[Item]) -> None:
        """Offer ``items`` to one member, shaped as its join of ``group`` asked."""
        shaped = shape(items, member.formats.get(group))
        if shaped:
            member.offer(shaped, join_frames(shaped, member.kind))

    def set_history(self, pattern: str, size: int, ttl: float = 300.0) -> None:
        """Keep ``size`` messages (0: none) for ``ttl`` seconds in the groups whose name matches ``pattern`` (``fnmatch``:
        ``"feed:*"``), for connections that resume; the latest rule that matches wins. Set it the same way in every
        worker (at import), and pass the same to :func:`publish` from outside."""
        if size < 0 or ttl <= 0:
            raise ValueError(f"history size must be >= 0 and ttl > 0, got size={size!r}, ttl={ttl!r}")
        self._history_rules.append((pattern, History(size, ttl) if size else None))

    def history_for(self, group: str) -> History | None:
        """How much history ``group`` keeps (None: none, delivery at most once)."""
        if group.startswith(USER_GROUP):
            return None
        for pattern, history in reversed(self._history_rules):
            if pattern == "*" or fnmatch.fnmatchcase(group, pattern):
                return history
        return None

    def leave(self, ws: WebSocket, group: str) -> None:
        """Remove ``ws`` from ``group``."""
        member = self._members.get(ws)
        if member is not None and group in member.groups:
            member.groups.discard(group)
            self._forget(member, group)

    def leave_all(self, ws: WebSocket) -> None:
        """Remove ``ws`` from every group."""
        member = self._members.get(ws)
        if member is not None:
            for group in list(member.groups):
                self._forget(member, group)
            member.groups.clear()

    def _ended(self, ws: WebSocket) -> None:
        """The connection ended: it leaves every group, and what still waited for it is dropped.

        Its membership is kept until then, so a connection that leaves and joins again is watched once.
        """
        self.leave_all(ws)
        member = self._members.pop(ws, None)
        if member is not None:
            member.stop()

    def _forget(self, member: Member, group: str) -> None:
        self._absent(member, group)
        members = self._groups.get(group)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._groups[group]
                del self._subscribed[group]
                self.tracks.forget(group)
                self.backend.unsubscribe(group)

    def members(self, group: str) -> int:
        """How many connections of this worker are in ``group`` (other workers' are not counted)."""
        return len(self._groups.get(group, ()))

    def workers(self, group: str) -> int:
        """How many workers, on every machine, have members of ``group`` now (Redis; in memory: this one or none)."""
        return self.backend.workers(group)

    def groups(self) -> list[str]:
        """The groups this worker has members of (the only ones whose messages it receives)."""
        return [group for group in self._groups if not group.startswith(USER_GROUP)]

    # Publishing.

    def publish(self, group: str, message: Message | bytearray | memoryview, *, exclude: WebSocket | None = None) -> int:
        """Send ``message`` to every member of ``group`` in every worker the backend reaches, except ``exclude``.

        Returns how many workers with members of the group received it (in memory: 1 or 0): 0 means that nobody is
        in the group right now, or (with a warning in the log) that Redis could not be reached; the message is then
        lost. Text stays text, bytes-like is sent as binary.
        """
        sender = b""
        if exclude is not None:
            member = self._members.get(exclude)
            if member is not None:
                sender = member.token
        return self.backend.publish(group, message, sender, self.history_for(group))

    def deliver(self, group: str, message: Published, sender: bytes = b"", position: Position | None = None) -> None:
        """Hand a published message to this worker's members of ``group`` (called by the backend)."""
        self.counters.received += 1
        if group not in self._groups:
            return
        if isinstance(message, CloseRequest):
            self._close_members(group, message)
            return
        item = Outgoing(group, message, sender, position)
        if position is None:
            self._pending.append(item)
        else:
            with self.tracks.lock:
                self._pending.extend(self.tracks.arrange(group, item))
        self._schedule()

    def resumed(self, group: str) -> None:
        """The backend receives ``group`` again after an outage: what its members missed is read from its history."""
        if group in self._groups and self.history_for(group) is not None:
            self._spawn(self._catch_up, group)

    def _catch_up(self, group: str) -> None:
        with self.tracks.lock:
            items = self.tracks.catch_up(group)
            self._pending.extend(items)
        if items:
            log.info("hub: group %r caught up with %d message(s) from its history after an outage", group, len(items))
            self._schedule()

    def _close_members(self, group: str, request: CloseRequest) -> None:
        for member in list(self._groups.get(group, ())):
            self._spawn(close_without_waiting, member.ws, request.code, request.reason)

    def _schedule(self) -> None:
        if not self._pending:
            return
        if self._defer is None:
            with self._lock:
                self._fan_out()
        elif not self._scheduled:
            self._scheduled = True
            self._defer(self._fan_out)

    def reaches(self, group: str, sender: bytes = b"") -> bool:
        """True when this worker has a member of ``group`` other than the one with token ``sender``."""
        members = self._groups.get(group)
        if not members:
            return False
        return not sender or len(members) > 1 or next(iter(members)).token != sender

    def _fan_out(self) -> None:
        """Offer everything published since the last pass to the members, in runs of one group, in order."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        start = 0
        while start < len(pending):
            group = pending[start].group
            end = start + 1
            while end < len(pending) and pending[end].group == group:
                end += 1
            offer_run(self._groups.get(group), group, pending[start:end])
            start = end
