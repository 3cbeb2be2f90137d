"""``WebSockets`` (the Flask extension) at its documented path; it lives in :mod:`wsgi_ws.integrations.flask_ext`."""

from __future__ import annotations

from .integrations.flask_ext import WebSockets

__all__ = ["WebSockets"]
