"""The sample app: an echo WebSocket at /ws and the browser test page at /."""

from __future__ import annotations

from flask import Flask, render_template

from wsgi_ws import WebSocket
from wsgi_ws.flask_ext import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)


@app.get("/")
def index() -> str:
    """The browser test page."""
    return render_template("index.html")


@sockets.route("/ws")
def echo(ws: WebSocket) -> None:
    """Echo every message back, text as text and binary as binary, until the client closes."""
    for message in ws:
        ws.send(message)
