"""The wsgi-ws fan-out app of bench/fanout.py: subscribers at /sub, one publisher at /pub, one hub group.

    WSGI_WS_BIND=127.0.0.1:PORT gunicorn -c gunicorn.conf.py --pythonpath bench/servers fanout_wsgi_ws:app

Run from the project root (so gunicorn.conf.py and wsgi_ws are found). The hub is the in-memory one unless
``WS_HUB_URL`` names a Redis server; ``WS_HUB_QUEUE_LIMIT`` bounds how far a subscriber may fall behind.
"""

from __future__ import annotations

from flask import Flask

from wsgi_ws import WebSocket
from wsgi_ws.flask_ext import WebSockets
from wsgi_ws.hub import current_hub

app = Flask(__name__)
sockets = WebSockets(app)


@sockets.route("/sub")
def subscribe(ws: WebSocket) -> None:
    """Join the group and stay until the client leaves; the hub sends every published message."""
    current_hub().join(ws, "bench")
    for _ in ws:
        pass


@sockets.route("/pub")
def publish(ws: WebSocket) -> None:
    """Publish every message received to the group."""
    hub = current_hub()
    for message in ws:
        hub.publish("bench", message)
