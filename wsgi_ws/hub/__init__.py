"""Broadcast hub: named groups of connections, one message to all members, in one worker or across many.

See :mod:`wsgi_ws.hub.hub` for the hub, :mod:`wsgi_ws.hub.member` for how a member is written to, and
:mod:`wsgi_ws.hub.backends` and :mod:`wsgi_ws.hub.redis_backend` for how messages travel between workers.
"""

from __future__ import annotations

from .backends import CHANNEL_PREFIX, Backend, MemoryBackend, decode, encode
from .hub import Hub
from .process import current_hub, make_hub, publish

__all__ = ["CHANNEL_PREFIX", "Backend", "Hub", "MemoryBackend", "current_hub", "decode", "encode", "make_hub", "publish"]
