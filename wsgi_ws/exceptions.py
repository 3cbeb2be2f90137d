"""The one exception tree of wsgi-ws.

::

    WebSocketError                 (also geventwebsocket.exceptions.WebSocketError, so OSError)
    ├── ConnectionClosed           the connection is closed; carries close_code, close_reason, rcvd and sent
    │   ├── ConnectionClosedOK     it closed normally: 1000, 1001, or a close frame without a code (1005)
    │   └── ConnectionClosedError  anything else: a protocol error, 1011, an abort, the peer vanished (1006)
    ├── HandshakeError             an upgrade request refused; carries the HTTP status, reason and headers
    ├── InvalidState               the API used at the wrong moment: accept twice, options after accept, ...
    ├── InvalidArgument            an argument RFC 6455 forbids: a close code, a reason or ping too long (ValueError)
    ├── InvalidMessage             a client's message is not what the handler asked for: receive_json (ValueError)
    └── InvalidOption              a setting has a bad value; names the setting (also ValueError)

Every error carries what follows from it: a close code (``ConnectionClosed``) or an HTTP status
(``HandshakeError``). ``WebSocketError`` derives from gevent-websocket's base class, so an app written for
gevent-websocket that catches ``geventwebsocket.exceptions.WebSocketError`` keeps working. That base is why this
module sits above the sans-I/O layer (``wsgi_ws.protocol``), which raises plain errors of its own;
:func:`from_protocol` turns each into its counterpart here.
"""

from __future__ import annotations

from geventwebsocket.exceptions import WebSocketError as _GeventWebSocketError
from websockets.frames import Close, CloseCode

from .protocol.errors import HandshakeRefused, ProtocolError, SessionClosed, UsageError
from .protocol.state import InvalidTransition

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidArgument",
    "InvalidMessage",
    "InvalidOption",
    "InvalidState",
    "WebSocketError",
    "from_protocol",
]

#: Close codes of a normal closing (RFC 6455 §7.4.1; 1005: a close frame without a code).
NORMAL_CLOSE_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})


class WebSocketError(_GeventWebSocketError):  # type: ignore[misc]  # gevent-websocket is untyped
    """Base class of every error raised by wsgi-ws."""


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed: sending or receiving is no longer possible.

    ``close_code`` and ``close_reason`` are what the handler sees (``ws.close_code``): the peer's code, the code we
    failed or aborted with, or 1006 when the peer vanished. ``rcvd`` and ``sent`` are the close frames received and
    sent (``websockets.frames.Close``), or None. Raise sites create the right subclass with :meth:`of`.
    """

    def __init__(self, close_code: int, close_reason: str = "", rcvd: Close | None = None, sent: Close | None = None) -> None:
        self.close_code = int(close_code)  # a plain int: an IntEnum's str() is its name before Python 3.11
        self.close_reason = close_reason
        self.rcvd = rcvd
        self.sent = sent
        super().__init__(f"WebSocket connection is closed (code {close_code}{': ' if close_reason else ''}{close_reason})")

    @staticmethod
    def of(close_code: int, close_reason: str = "", rcvd: Close | None = None, sent: Close | None = None) -> ConnectionClosed:
        """:class:`ConnectionClosedOK` for a normal closing code, else :class:`ConnectionClosedError`."""
        kind = ConnectionClosedOK if close_code in NORMAL_CLOSE_CODES else ConnectionClosedError
        return kind(close_code, close_reason, rcvd, sent)


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000, 1001 or 1005)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, was aborted, or the peer vanished (1006)."""


class HandshakeError(WebSocketError):
    """The opening handshake is refused with an HTTP status, a reason and extra response headers."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        super().__init__(f"{status}: {reason}")


class InvalidState(WebSocketError):
    """The API was used at a moment it does not allow (accepting twice, changing options after accept, ...)."""


class InvalidArgument(WebSocketError, ValueError):
    """An argument RFC 6455 forbids: a close code that may not be sent, a close reason or ping payload too long."""


class InvalidMessage(WebSocketError, ValueError):
    """A message the client sent is not what the handler asked for (``receive_json``: not JSON)."""


class InvalidOption(WebSocketError, ValueError):
    """A WebSocket option has a bad value; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid WebSocket setting {setting}: {problem}")


def from_protocol(error: ProtocolError) -> WebSocketError:
    """The public error for an error of the sans-I/O layer (raise it ``from None``)."""
    if isinstance(error, WebSocketError):
        return error
    if isinstance(error, SessionClosed):
        return ConnectionClosed.of(error.code, error.reason, error.rcvd, error.sent)
    if isinstance(error, HandshakeRefused):
        return HandshakeError(error.status, error.reason, error.headers)
    if isinstance(error, UsageError):
        return InvalidArgument(str(error))
    if isinstance(error, InvalidTransition):
        return InvalidState(str(error))
    return WebSocketError(str(error))
