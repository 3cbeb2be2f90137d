"""gevent-websocket 0.10.1 echo, run under its own gunicorn worker:

gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker --chdir bench/servers gws_echo:app
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Echo every message back with its type (str -> text, bytes -> binary) until the client closes."""
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    while True:
        message = ws.receive()
        if message is None:
            break
        ws.send(message)
    return []
