"""The blocking connection layer: the ``WebSocket`` a handler holds, its socket I/O, and keep-alive.

- :mod:`.websocket`: :class:`WebSocket`, the API over the protocol session, the transport and the lifecycle
- :mod:`.transport`: one socket's read coordination and corked writer
- :mod:`.keepalive`: the per-process keep-alive loop (:class:`ConnectionMonitor`)
"""

from __future__ import annotations

from .keepalive import ConnectionMonitor, spawn_background
from .transport import Transport
from .websocket import PartialMessage, WebSocket

__all__ = ["ConnectionMonitor", "PartialMessage", "Transport", "WebSocket", "spawn_background"]
