"""Routes for the per-IP limits and the origin policy (issue 16), served by every server in tests/test_e2e_limits.py."""

from __future__ import annotations

import os

from flask import Flask

from wsgi_ws import WebSocket, metrics
from wsgi_ws.flask_ext import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)


def _hold(ws: WebSocket) -> None:
    """Say which process holds the connection, then echo until the client leaves."""
    ws.send(f"open {os.getpid()}")
    for message in ws:
        ws.send(message)


@sockets.route("/hold")
def hold(ws: WebSocket) -> None:
    """Held open with the server's limits."""
    _hold(ws)


@sockets.route("/route/capped", max_connections_per_ip=1)
def capped(ws: WebSocket) -> None:
    """One connection per IP on this route, whatever the server allows."""
    _hold(ws)


@sockets.route("/route/slow", max_connection_rate_per_ip=1)
def slow(ws: WebSocket) -> None:
    """One new connection per IP per second on this route."""
    _hold(ws)


@app.get("/stats")
def stats() -> dict[str, int]:
    """This process's counters."""
    return metrics.snapshot()
