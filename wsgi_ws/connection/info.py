"""What a connection is, read-only: the request's facts, where the connection is in its life, what it counted.

:class:`ConnectionInfo` is the base of :class:`~wsgi_ws.connection.websocket.WebSocket`, which adds what a handler
does with the connection. It holds the per-connection state both need, in slots (no per-instance dict: a dict would
take about 1.5 KB per idle connection).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from ..exceptions import ConnectionClosed, InvalidState, from_protocol
from ..metrics import Buckets
from ..options import WebSocketOptions
from ..protocol.handshake import HandshakeRequest
from ..protocol.session import CloseCode, Session
from ..protocol.state import ConnectionState, Event, Lifecycle
from . import expiry
from .transport import Transport

__all__ = ["ConnectionInfo"]

_CONNECTING, _OPEN, _CLOSING, _CLOSED = ConnectionState


def peer_of(environ: Mapping[str, Any]) -> str:
    """The client's address in a request's environ, ``host:port``, as every log line names it."""
    return f"{environ.get('REMOTE_ADDR', '?')}:{environ.get('REMOTE_PORT', '?')}"


class ConnectionInfo:
    """The facts and state of one WebSocket connection (see :class:`~wsgi_ws.connection.websocket.WebSocket`)."""

    # Slots, not a __dict__: a dict would take about 1.5 KB per idle connection.
    __slots__ = (
        "__weakref__",
        "_buffered",
        "_close_socket",
        "_end_reported",
        "_expiry",
        "_finish_callbacks",
        "_lifecycle",
        "_options",
        "_rate",
        "_request",
        "_session",
        "_started",
        "_subprotocol",
        "environ",
        "message_sizes",
        "messages_received",
        "messages_sent",
        "transport",
        "user",
    )

    environ: Mapping[str, Any]
    #: The user this connection belongs to, as the app named it (``ws.user = ...``; see ``Hub.identify``), or None.
    user: str | None
    messages_received: int
    messages_sent: int
    #: The buckets its received and sent messages' sizes are counted in: its route's, once accepted while the metrics
    #: are exported (:func:`wsgi_ws.metrics.count_message_sizes`); else None, and they are not counted.
    message_sizes: tuple[Buckets, Buckets] | None
    transport: Transport
    _buffered: bytes
    _close_socket: bool
    _end_reported: bool
    _expiry: expiry.Expiry | None  # unset until close_at
    _finish_callbacks: list[Callable[[], object]] | None
    _lifecycle: Lifecycle
    _options: WebSocketOptions
    _request: HandshakeRequest
    _session: Session | None
    _started: float
    _subprotocol: str | None

    # Before accept.

    def reconfigure(self, options: WebSocketOptions) -> None:
        """Use these options for this connection instead (only before accept: a route's or a middleware's own)."""
        if self._session is not None:
            raise InvalidState("options can only change before the WebSocket is accepted")
        self._options = options

    def request_ended(self) -> None:
        """The request ended without an accept (the app answered with HTTP): a later accept raises. Server-facing."""
        if self._lifecycle.state is _CONNECTING:
            self._lifecycle.handle(Event.REQUEST_ENDED)

    def close_at(
        self, when: float | datetime.datetime | None, code: int = expiry.DEFAULT_CODE, reason: str = expiry.DEFAULT_REASON
    ) -> None:
        """Close this connection with ``code`` and ``reason`` at wall-clock time ``when``: when its credentials expire.

        ``when`` is a POSIX timestamp (a JWT's ``exp``) or an aware datetime; ``None`` cancels. Calling it again
        replaces the deadline (a refreshed token); one already past closes at once; before accept it applies from the
        accept on. The close is the usual closing handshake, from the background (the handler's ``receive()`` then
        returns None, ``close_code`` is ``code``); no greenlet or thread waits for it (``wsgi_ws.connection.expiry``).
        Raises :class:`InvalidArgument` for a naive datetime, a code that may not be sent or a reason over 123 bytes.
        """
        expiry.close_at(cast(expiry.Expiring, self), when, code, reason)

    # Request facts.

    @property
    def path(self) -> str:
        """The request path (gevent-websocket's ``ws.path``)."""
        return str(self.environ.get("PATH_INFO", ""))

    @property
    def origin(self) -> str | None:
        """The request's ``Origin`` header, or None."""
        return self._request.origin

    @property
    def offered_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order."""
        return self._request.subprotocols

    @property
    def peer(self) -> str:
        """The client's address, ``host:port``."""
        return peer_of(self.environ)

    @property
    def options(self) -> WebSocketOptions:
        """The options of this connection (the process's, its route's or its middleware's)."""
        return self._options

    @property
    def keep_alive(self) -> tuple[float | None, float | None]:
        """``(keep_alive_interval, keep_alive_timeout)`` of this connection."""
        return self._options.keep_alive_interval, self._options.keep_alive_timeout

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol in use; before accept, the one an implicit accept will choose (or None)."""
        if self._session is None:
            return self._request.select_subprotocol(self._options.subprotocols)
        return self._subprotocol

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated for this connection."""
        return self._session is not None and self._session.compressed

    # State.

    @property
    def state(self) -> ConnectionState:
        """Where the connection is: CONNECTING, OPEN, CLOSING or CLOSED (``wsgi_ws.protocol.state``)."""
        return self._lifecycle.state

    @property
    def accepted(self) -> bool:
        """True once the 101 response was sent."""
        return self._session is not None

    @property
    def closed(self) -> bool:
        """True once no more messages can be sent or received (messages received before a close still count)."""
        state = self._lifecycle.state
        if state is _OPEN or state is _CONNECTING:
            return False
        session = self._session
        return state is _CLOSED or session is None or not session.is_open or not session.assembler.has_unread()

    @property
    def close_code(self) -> int | None:
        """Why the connection closed: the peer's close code, our failure code, or 1006; None while open."""
        aborted = self._lifecycle.aborted
        if aborted is not None:
            return aborted[0]
        return None if self._session is None else self._session.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason that goes with :attr:`close_code`; None while open."""
        aborted = self._lifecycle.aborted
        if aborted is not None:
            return aborted[1]
        return None if self._session is None or self._session.close_code is None else self._session.close_reason

    @property
    def bytes_received(self) -> int:
        """Bytes read from the socket so far."""
        return self.transport.bytes_received

    @property
    def bytes_sent(self) -> int:
        """Bytes written to the socket so far."""
        return self.transport.bytes_sent

    def _closed_error(self) -> ConnectionClosed:
        aborted = self._lifecycle.aborted
        if aborted is not None:
            return ConnectionClosed.of(*aborted)
        session = self._session
        if session is None:
            return ConnectionClosed.of(CloseCode.ABNORMAL_CLOSURE, "the request ended before the WebSocket was accepted")
        error = from_protocol(session.closed_error())
        assert isinstance(error, ConnectionClosed)
        return error

    @property
    def finish_callbacks(self) -> tuple[Callable[[], object], ...]:
        """The callbacks given to :meth:`on_finish`, in order (the server integration calls them)."""
        return tuple(self._finish_callbacks or ())

    @property
    def duration(self) -> float:
        """Seconds since the connection object was made."""
        return time.monotonic() - self._started
