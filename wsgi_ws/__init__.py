"""wsgi-ws: WebSockets for plain synchronous WSGI apps, served by gunicorn with gevent workers.

The public names below are imported on first use (PEP 562), so ``import wsgi_ws.protocol`` stays free of gevent,
gunicorn and Flask. The layers, from the bottom: ``wsgi_ws.protocol`` (sans-I/O), ``wsgi_ws.exceptions`` and
``wsgi_ws.options``, ``wsgi_ws.connection`` (the blocking ``WebSocket``), ``wsgi_ws.integrations`` (worker,
middleware, Flask), ``wsgi_ws.hub``, ``wsgi_ws.testing``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import metrics as metrics
    from . import prometheus as prometheus
    from .connection.websocket import WebSocket as WebSocket
    from .exceptions import ConnectionClosed as ConnectionClosed
    from .exceptions import ConnectionClosedError as ConnectionClosedError
    from .exceptions import ConnectionClosedOK as ConnectionClosedOK
    from .exceptions import HandshakeError as HandshakeError
    from .exceptions import InvalidArgument as InvalidArgument
    from .exceptions import InvalidMessage as InvalidMessage
    from .exceptions import InvalidOption as InvalidOption
    from .exceptions import InvalidState as InvalidState
    from .exceptions import WebSocketError as WebSocketError
    from .integrations.auth import bearer_token as bearer_token
    from .options import WebSocketOptions as WebSocketOptions
    from .options import configure as configure
    from .options import current_options as current_options
    from .protocol.assembler import PartialMessage as PartialMessage
    from .protocol.session import CloseCode as CloseCode
    from .protocol.state import ConnectionState as ConnectionState

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY = {
    "CloseCode": ".protocol.session",
    "ConnectionClosed": ".exceptions",
    "ConnectionClosedError": ".exceptions",
    "ConnectionClosedOK": ".exceptions",
    "ConnectionState": ".protocol.state",
    "HandshakeError": ".exceptions",
    "InvalidArgument": ".exceptions",
    "InvalidMessage": ".exceptions",
    "InvalidOption": ".exceptions",
    "InvalidState": ".exceptions",
    "PartialMessage": ".protocol.assembler",
    "WebSocket": ".connection.websocket",
    "WebSocketError": ".exceptions",
    "bearer_token": ".integrations.auth",
    "WebSocketOptions": ".options",
    "configure": ".options",
    "current_options": ".options",
}

#: Public submodules, imported on first use: ``wsgi_ws.metrics``, ``wsgi_ws.prometheus``.
_SUBMODULES = ("metrics", "prometheus")

__all__ = [*sorted(_LAZY), "__version__", "metrics", "prometheus"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsgi_ws' has no attribute {name!r}")
