"""The lifecycle of one WebSocket connection as a table-driven state machine, I/O free.

The rules, in the order a connection lives them (RFC 6455 §4, §7):

- A valid upgrade request starts ``CONNECTING``: nothing has been sent, and the application may still answer with
  any HTTP response. Sending the 101 makes it ``OPEN``; a request that ends without one goes straight to ``CLOSED``.
- ``OPEN``: messages flow both ways. A close frame sent or received, a protocol violation (we fail the connection)
  or TCP ending makes it ``CLOSING``: nothing new is read from the network, but messages received before the close
  may still be taken, and answered while our closing frame waits for them.
- ``CLOSED``: the closing handshake is over, or it was cut short. An *abort* (keep-alive timeout, a hub member too
  slow) is a kind of ``CLOSED`` reached from ``OPEN`` or ``CLOSING`` without waiting for the peer; it remembers the
  code and reason it closed with.

Every legal move is a row of :data:`TRANSITIONS`; anything else raises :class:`InvalidTransition`, which the
connection layer reports as misuse of the API (accepting twice, accepting a request that already ended).
"""

from __future__ import annotations

import enum

from .errors import ProtocolError

__all__ = ["TRANSITIONS", "ConnectionState", "Event", "InvalidTransition", "Lifecycle"]


class ConnectionState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Event(enum.Enum):
    """What happens to a connection."""

    #: The 101 response was sent.
    ACCEPT = "accept"
    #: The request ended without a 101 (the application answered with HTTP, or the server gave up on it).
    REQUEST_ENDED = "request ended"
    #: A close frame was sent or received, the connection failed, or TCP ended: nothing new will be read.
    CLOSE_STARTED = "close started"
    #: Cut without waiting for the peer.
    ABORT = "abort"
    #: The closing handshake is over (or timed out) and the socket is done with.
    CLOSE_DONE = "close done"


_S, _E = ConnectionState, Event

#: ``(state, event) -> new state``: every legal move, and only those.
TRANSITIONS: dict[tuple[ConnectionState, Event], ConnectionState] = {
    (_S.CONNECTING, _E.ACCEPT): _S.OPEN,
    (_S.CONNECTING, _E.REQUEST_ENDED): _S.CLOSED,
    (_S.OPEN, _E.CLOSE_STARTED): _S.CLOSING,
    (_S.OPEN, _E.ABORT): _S.CLOSED,
    (_S.OPEN, _E.CLOSE_DONE): _S.CLOSED,
    (_S.CLOSING, _E.CLOSE_STARTED): _S.CLOSING,
    (_S.CLOSING, _E.ABORT): _S.CLOSED,
    (_S.CLOSING, _E.CLOSE_DONE): _S.CLOSED,
    (_S.CLOSED, _E.CLOSE_STARTED): _S.CLOSED,
    (_S.CLOSED, _E.ABORT): _S.CLOSED,
    (_S.CLOSED, _E.CLOSE_DONE): _S.CLOSED,
}


class InvalidTransition(ProtocolError):
    """An event that is not legal in the current state (for example a second ACCEPT)."""

    def __init__(self, state: ConnectionState, event: Event) -> None:
        self.state = state
        self.event = event
        super().__init__(f"cannot {event.value} a connection that is {state.value}")


class Lifecycle:
    """The state of one connection; :meth:`handle` moves it by the table."""

    __slots__ = ("aborted", "state")

    def __init__(self) -> None:
        self.state = ConnectionState.CONNECTING
        #: ``(code, reason)`` once aborted (the first abort wins), else None.
        self.aborted: tuple[int, str] | None = None

    def handle(self, event: Event) -> ConnectionState:
        """Apply ``event``; return the new state, or raise :class:`InvalidTransition`."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise InvalidTransition(self.state, event) from None
        return self.state

    def abort(self, code: int, reason: str) -> bool:
        """Record an abort with ``code`` and ``reason``; False if the connection was aborted already (or never opened)."""
        if self.aborted is not None or self.state is ConnectionState.CONNECTING:
            return False
        self.handle(Event.ABORT)
        self.aborted = (int(code), reason)  # a plain int, as Session.close_code: not a CloseCode member
        return True
