"""The app ``python -m wsgi_ws client`` is tested against (tests/test_cli.py): echo, what the client sent in its
handshake, a binary message, and a close with the code the client asks for."""

from __future__ import annotations

import json

from flask import Flask

from wsgi_ws import WebSocket
from wsgi_ws.flask_ext import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)


@sockets.route("/ws")
def echo(ws: WebSocket) -> None:
    """Echo, as in the sample app."""
    for message in ws:
        ws.send(message)


@sockets.route("/introduce")
def introduce(ws: WebSocket) -> None:
    """Say what the handshake brought (an X-Token header, the Origin, the subprotocol), send 4 bytes, then echo."""
    ws.send(json.dumps({"x-token": ws.environ.get("HTTP_X_TOKEN"), "origin": ws.origin, "subprotocol": ws.subprotocol}))
    ws.send(b"\x00\xffhi")
    for message in ws:
        ws.send(message)


@sockets.route("/close-with")
def close_with(ws: WebSocket) -> None:
    """Close with the code and reason of the client's first message, "CODE REASON"."""
    text = ws.receive()
    assert isinstance(text, str)
    code, _, reason = text.partition(" ")
    ws.close(int(code), reason)


@sockets.route("/big")
def big(ws: WebSocket) -> None:
    """Send one message of 1 MiB and a byte: over the client's size limit (websockets' default, 1 MiB)."""
    ws.send("x" * (2**20 + 1))
    for _ in ws:
        pass
