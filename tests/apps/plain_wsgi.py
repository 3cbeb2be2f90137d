"""A plain WSGI app, no Flask, made WebSocket-capable by WebSocketMiddleware (for gthread and other servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from wsgi_ws.middleware import WebSocketMiddleware
from wsgi_ws.options import WebSocketOptions


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Echo on any path for WebSocket requests; a plain page otherwise."""
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain WSGI page\n"]
    for message in ws:
        ws.send(message)
    return []


# Its own options: under the gevent worker too, all of them apply (keep-alive included), not the process's.
app = WebSocketMiddleware(echo_app, WebSocketOptions(subprotocols=("plain.v1",), keep_alive_interval=0.2))
