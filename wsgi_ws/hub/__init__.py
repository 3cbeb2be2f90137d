"""Broadcast hub: named groups of connections, one message to all members, in one worker or across many.

See :mod:`wsgi_ws.hub.hub` for the hub, :mod:`wsgi_ws.hub.member` for how a member is written to,
:mod:`wsgi_ws.hub.backends` and :mod:`wsgi_ws.hub.redis_backend` for how messages travel between workers,
:mod:`wsgi_ws.hub.history` and :mod:`wsgi_ws.hub.recovery` for groups whose clients resume without losing messages,
and :mod:`wsgi_ws.hub.feed` for the JSON envelope the sample's ``/feed`` and ``static/wsgi-ws.js`` speak.
"""

from __future__ import annotations

from . import feed
from .backends import CHANNEL_PREFIX, Backend, MemoryBackend, decode, encode
from .history import Delivery, History, Position, Recovery
from .hub import Hub
from .process import current_hub, disconnect_user, make_hub, publish, send_to_user

__all__ = [
    "CHANNEL_PREFIX",
    "Backend",
    "Delivery",
    "History",
    "Hub",
    "MemoryBackend",
    "Position",
    "Recovery",
    "current_hub",
    "decode",
    "disconnect_user",
    "encode",
    "feed",
    "make_hub",
    "publish",
    "send_to_user",
]
