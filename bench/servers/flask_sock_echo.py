"""flask-sock 0.7 echo, run under gunicorn's gevent worker:

    gunicorn -k gevent --chdir bench/servers flask_sock_echo:app

BENCH_PING_INTERVAL (seconds) turns on simple-websocket's keep-alive pings; unset = none (its default).
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
_ping = float(os.environ.get("BENCH_PING_INTERVAL", "0"))
app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": None, "ping_interval": _ping or None}
sock = Sock(app)


@sock.route("/ws")
def echo(ws) -> None:  # type: ignore[no-untyped-def]
    """Echo every message back until the client closes (flask-sock ends the loop with ConnectionClosed)."""
    while True:
        ws.send(ws.receive())
