"""The sample app: echo at /ws, a server-push clock at /clock, a chat at /chat, a resumable feed at /feed/<group>,
and the browser test page at /."""

from __future__ import annotations

import json
import os
import threading
import time

from flask import Flask, Response, render_template, request

from wsgi_ws import ConnectionClosed, WebSocket, current_options, prometheus
from wsgi_ws.flask_ext import WebSockets
from wsgi_ws.hub import current_hub, feed

#: The sample's groups keep their last 1,000 messages for 5 minutes, for clients that resume (unless
#: WS_HUB_HISTORY_SIZE says otherwise).
FEED_HISTORY_SIZE, FEED_HISTORY_TTL = 1000, 300.0

app = Flask(__name__)
sockets = WebSockets(app)


@app.get("/")
def index() -> str:
    """The browser test page."""
    return render_template("index.html")


@app.get("/stats")
def stats() -> dict[str, int]:
    """The server's WebSocket counters, summed over its workers: open connections, totals accepted, refused and
    closed, messages and bytes (one worker's without prometheus_client installed)."""
    return prometheus.server_totals()


@app.get("/metrics")
def metrics_page() -> Response:
    """Every worker's WebSocket metrics in Prometheus's text format."""
    body, content_type = prometheus.exposition()
    return Response(body, content_type=content_type)


@sockets.route("/ws")
def echo(ws: WebSocket) -> None:
    """Echo every message back, text as text and binary as binary, until the client closes."""
    for message in ws:
        ws.send(message)


@sockets.route("/clock")
def clock(ws: WebSocket) -> Response | None:
    """Push the time from a background thread until the client closes (ASP.NET's background-service pattern).

    ``?interval=SECONDS`` (default 1) sets the pace; ``?count=N`` makes the worker stop after N ticks and close.
    """
    try:
        interval = float(request.args.get("interval", "1"))
        count = int(request.args.get("count", "0"))
        if not 0.01 <= interval <= 3600 or count < 0:
            raise ValueError
    except ValueError:
        return Response("interval must be 0.01-3600 seconds and count a whole number >= 0\n", status=400)
    ws.accept()

    def push() -> None:
        tick = 0
        try:
            while not ws.closed:
                tick += 1
                ws.send(json.dumps({"tick": tick, "time": time.strftime("%H:%M:%S")}))
                if count and tick >= count:
                    ws.close(1000, "done")
                    return
                time.sleep(interval)
        except ConnectionClosed:
            pass  # the client left; the handler's wait_closed() returns too

    threading.Thread(target=push, daemon=True).start()
    ws.wait_closed()  # keeps the request (and the connection) alive until the worker or the client closes
    return None


@app.get("/chat")
def chat_page() -> str:
    """The chat page: open it in several tabs (or browsers); every tab sees every message."""
    return render_template("chat.html")


@sockets.route("/chat/ws")
def chat(ws: WebSocket) -> None:
    """Relay every chat line to everyone in the room, in every worker (set WS_HUB_URL to a Redis URL for that)."""
    hub = current_hub()
    hub.join(ws, "chat")
    for message in ws:
        if not isinstance(message, str):
            continue
        try:
            line = json.loads(message)
            name, text = str(line["name"])[:40], str(line["text"])[:2000]
        except (ValueError, KeyError, TypeError):
            ws.close(1003, "expected JSON {name, text}")
            return
        if text.strip():
            hub.publish("chat", json.dumps({"name": name, "text": text, "worker": os.getpid(), "time": time.strftime("%H:%M:%S")}))


@sockets.route("/feed/<group>")
def feed_socket(ws: WebSocket, group: str) -> Response | None:
    """A resumable feed: join ``group`` (from ``?since=<position>`` when given), get ``{"type": "joined", ...}`` then
    every message as ``{"type": "message", "position": ..., "data": ...}``; every text sent is published to the group.

    With ``WS_HUB_URL`` set it spans workers and machines, and survives worker restarts and Redis outages.
    """
    if not 1 <= len(group) <= 200:
        return Response("the group name must be 1-200 characters\n", status=400)
    hub = current_hub()
    hub.join(ws, group, since=request.args.get("since"), render=feed.render, announce=feed.announce)
    for message in ws:
        if isinstance(message, str):
            hub.publish(group, message)
    return None


def _keep_history() -> None:
    if not current_options().hub_history_size:
        current_hub().set_history("*", FEED_HISTORY_SIZE, FEED_HISTORY_TTL)


_keep_history()
