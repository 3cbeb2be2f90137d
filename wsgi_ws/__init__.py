"""wsgi-ws: WebSockets for plain synchronous WSGI apps, served by gunicorn with gevent workers."""

from __future__ import annotations

from . import metrics
from .exceptions import ConnectionClosed, HandshakeError, InvalidOption, WebSocketError
from .options import WebSocketOptions, configure, current_options
from .protocol import CloseCode
from .websocket import WebSocket

__version__ = "0.1.0"

__all__ = [
    "CloseCode",
    "ConnectionClosed",
    "HandshakeError",
    "InvalidOption",
    "WebSocket",
    "WebSocketError",
    "WebSocketOptions",
    "__version__",
    "configure",
    "current_options",
    "metrics",
]
