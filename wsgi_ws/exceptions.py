"""The one exception tree of wsgi-ws.

::

    WebSocketError            (also geventwebsocket.exceptions.WebSocketError, so OSError)
    ├── ConnectionClosed      the connection is closed; carries close_code and close_reason
    ├── HandshakeError        the upgrade request is refused; carries the HTTP status and reason
    └── InvalidOption         a setting has a bad value; also ValueError; names the setting

Every error carries what follows from it: a close code (``ConnectionClosed``) or an HTTP status
(``HandshakeError``). ``WebSocketError`` derives from gevent-websocket's base class, so an app written
for gevent-websocket that catches ``geventwebsocket.exceptions.WebSocketError`` keeps working.
"""

from __future__ import annotations

from geventwebsocket.exceptions import WebSocketError as _GeventWebSocketError

__all__ = ["ConnectionClosed", "HandshakeError", "InvalidOption", "WebSocketError"]


class WebSocketError(_GeventWebSocketError):  # type: ignore[misc]  # gevent-websocket is untyped
    """Base class of every error raised by wsgi-ws."""


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed: sending or receiving is no longer possible."""

    def __init__(self, close_code: int, close_reason: str = "") -> None:
        self.close_code = close_code
        self.close_reason = close_reason
        super().__init__(f"WebSocket connection is closed (code {close_code}{': ' if close_reason else ''}{close_reason})")


class HandshakeError(WebSocketError):
    """The opening handshake is refused with an HTTP status, a reason and extra response headers."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        super().__init__(f"{status}: {reason}")


class InvalidOption(WebSocketError, ValueError):
    """A WebSocket option has a bad value; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid WebSocket setting {setting}: {problem}")
