"""The gunicorn worker class, at its documented path: ``worker_class = "wsgi_ws.worker.WebSocketWorker"``.

It lives in :mod:`wsgi_ws.integrations.worker`; this module keeps the short path working.
"""

from __future__ import annotations

from .integrations.worker import WebSocketHandler, WebSocketServer, WebSocketWorker

__all__ = ["WebSocketHandler", "WebSocketServer", "WebSocketWorker"]
