"""``WebSocketMiddleware`` at its documented path; it lives in :mod:`wsgi_ws.integrations.middleware`."""

from __future__ import annotations

from .integrations.middleware import WebSocketMiddleware

__all__ = ["WebSocketMiddleware"]
