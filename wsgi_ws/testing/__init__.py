"""Testing your own WebSocket handlers.

- :func:`serve` (``wsgi_ws.testing.live``): your app in a real gunicorn with the WebSocket worker, for end-to-end
  tests; about a second to start.
"""

from __future__ import annotations

from .live import STOP_TIMEOUT, TestServer, serve

__all__ = ["STOP_TIMEOUT", "TestServer", "serve"]
