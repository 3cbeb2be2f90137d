"""The errors of the sans-I/O layer: plain Python exceptions, so this layer imports neither gevent nor a socket.

The connection layer turns each into its counterpart of the public tree (``wsgi_ws.exceptions``), whose base is
gevent-websocket's ``WebSocketError``; code that uses this layer on its own catches these.

::

    ProtocolError
    ├── SessionClosed      the session can no longer send: carries the close frames received and sent
    ├── UsageError         the caller asked for something RFC 6455 forbids (also ValueError)
    └── HandshakeRefused   an upgrade request to refuse: carries the HTTP status, a reason and extra headers
"""

from __future__ import annotations

from websockets.frames import Close

__all__ = ["HandshakeRefused", "ProtocolError", "SessionClosed", "UsageError"]


class ProtocolError(Exception):
    """Base class of the errors raised by ``wsgi_ws.protocol``."""


class SessionClosed(ProtocolError):
    """The connection is closing or closed: ``code`` and ``reason`` are what the handler sees (RFC 6455 §7.1.5)."""

    def __init__(self, code: int, reason: str, rcvd: Close | None, sent: Close | None) -> None:
        self.code = code
        self.reason = reason
        #: The close frame received from the peer, if any.
        self.rcvd = rcvd
        #: The close frame we sent, if any.
        self.sent = sent
        super().__init__(code, reason)


class UsageError(ProtocolError, ValueError):
    """An argument RFC 6455 forbids: a bad close code, a close reason or ping payload that is too long."""


class HandshakeRefused(ProtocolError):
    """The opening handshake must be refused with HTTP ``status``, a plain-text ``reason`` and extra ``headers``."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        super().__init__(f"{status}: {reason}")
