"""Testing your own WebSocket handlers.

- :class:`TestClient` (``wsgi_ws.testing.client``): the app in this process, each connection a thread over a socket
  pair; no server, milliseconds per test, the library's real handshake, options, framing and log lines.
- :func:`serve` (``wsgi_ws.testing.live``): the app in a real gunicorn with the WebSocket worker, for end-to-end
  tests; about a second to start.

Both hand out the ``websockets`` package's blocking client, so a test moves between them by changing one line.
"""

from __future__ import annotations

from .client import HTTPResponse, TestClient, TestConnection
from .live import STOP_TIMEOUT, TestServer, serve

__all__ = ["STOP_TIMEOUT", "HTTPResponse", "TestClient", "TestConnection", "TestServer", "serve"]
