"""Flask routes that exercise the edges of the public API, served by gunicorn in the end-to-end tests."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import threading
import time

import greenlet
from flask import Blueprint, Flask, Response, abort, request

from wsgi_ws import ConnectionClosed, WebSocket, metrics, prometheus
from wsgi_ws.flask_ext import WebSockets
from wsgi_ws.hub import current_hub
from wsgi_ws.hub.presence import PresenceEntry

app = Flask(__name__)
sockets = WebSockets(app)
rooms = Blueprint("rooms", __name__)


@sockets.route("/ws")
def echo(ws: WebSocket) -> None:
    """Echo, as in the sample app."""
    for message in ws:
        ws.send(message)


@sockets.route("/json")
def json_echo(ws: WebSocket) -> None:
    """receive_json / send_json: each value back as {"got": value, "type": its Python type}; not JSON: 1007 (the
    InvalidMessage then raised ends the handler with one log line, the connection being closed already)."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            value = ws.receive_json(invalid_close_code=1007)
            ws.send_json({"got": value, "type": type(value).__name__}, binary=value == "as binary")


@sockets.route("/deny")
def deny(ws: WebSocket) -> Response:
    """Refuse with a plain HTTP answer before accepting."""
    return Response("no entry\n", status=403, headers={"X-Reason": "test"})


@sockets.route("/missing")
def missing(ws: WebSocket) -> None:
    """Refuse with an HTTPException before accepting."""
    abort(404)


@sockets.route("/raise-before")
def raise_before(ws: WebSocket) -> None:
    """Fail before accepting: plain HTTP 500."""
    raise RuntimeError("boom before accept")


@sockets.route("/raise-after")
def raise_after(ws: WebSocket) -> None:
    """Fail after the first message: close 1011."""
    ws.receive()
    raise RuntimeError("boom after accept")


@sockets.route("/close-with")
def close_with(ws: WebSocket) -> None:
    """Close with the code and reason the client asks for in its first message: "CODE REASON"."""
    text = ws.receive()
    assert isinstance(text, str)
    code, _, reason = text.partition(" ")
    ws.close(int(code), reason)


@sockets.route("/return-none")
def return_none(ws: WebSocket) -> None:
    """Return without accepting or a word: accepted and closed with 1000."""


@sockets.route("/explicit-accept")
def explicit_accept(ws: WebSocket) -> None:
    """Accept with the client's last offered subprotocol, then report the choice."""
    ws.accept(subprotocol=ws.offered_subprotocols[-1])
    ws.send(f"subprotocol={ws.subprotocol}")


@sockets.route("/subprotocol")
def subprotocol(ws: WebSocket) -> None:
    """Report the subprotocol chosen implicitly from the server's preferences."""
    ws.send(f"subprotocol={ws.subprotocol}")
    ws.receive()


@sockets.route("/close-code")
def close_code(ws: WebSocket) -> None:
    """After the client closes, send nothing; log what the handler saw (checked through the server log)."""
    for _ in ws:
        pass
    app.logger.warning("handler saw close_code=%s close_reason=%r", ws.close_code, ws.close_reason)


@sockets.route("/concurrent")
def concurrent(ws: WebSocket) -> None:
    """On "N M": N threads each send M numbered messages at once; frames must never interleave."""
    text = ws.receive()
    assert isinstance(text, str)
    writers, count = (int(part) for part in text.split())

    def write(index: int) -> None:
        for number in range(count):
            ws.send(f"{index}:{number}:" + "x" * (number % 5000))

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ws.send("done")
    ws.receive()


@sockets.route("/after-close")
def after_close(ws: WebSocket) -> None:
    """Receive until closed; then receive again must raise ConnectionClosed, and so must send."""
    while ws.receive() is not None:
        pass
    outcomes = []
    for action in (ws.receive, lambda: ws.send("late")):
        try:
            action()
            outcomes.append("no error")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    app.logger.warning("after close: %s", ",".join(outcomes))


@sockets.route("/report")
def report(ws: WebSocket) -> None:
    """Echo; log that the handler ran (with the origin), and how the connection ended."""
    app.logger.warning("handler ran for origin=%s", ws.origin)
    for message in ws:
        ws.send(message)
    app.logger.warning("report handler saw close_code=%s close_reason=%r", ws.close_code, ws.close_reason)


@sockets.route("/busy")
def busy(ws: WebSocket) -> None:
    """On "SECONDS", stay busy that long without receiving, then say "awake"; then echo."""
    text = ws.receive()
    assert isinstance(text, str)
    time.sleep(float(text))
    ws.send("awake")
    for message in ws:
        ws.send(message)


@sockets.route("/stream")
def stream(ws: WebSocket) -> None:
    """Read one message in parts; answer with JSON: parts, largest part in bytes, total bytes, sha256, kind."""
    digest = hashlib.sha256()
    parts = largest = total = 0
    kind = "?"
    while True:
        part = ws.receive_partial()
        if part is None:
            return
        data = part.data.encode() if isinstance(part.data, str) else part.data
        kind = "text" if isinstance(part.data, str) else "binary"
        digest.update(data)
        parts += 1
        largest = max(largest, len(data))
        total += len(data)
        if part.end_of_message:
            break
    ws.send(json.dumps({"parts": parts, "largest": largest, "bytes": total, "sha256": digest.hexdigest(), "kind": kind}))
    for message in ws:
        ws.send(message)


@app.get("/headers")
def headers() -> dict[str, str | None]:
    """The proxy headers as the app sees them, and the hop-by-hop ones a proxy may add."""
    names = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host", "Connection", "Upgrade")
    return {name: request.headers.get(name) for name in names}


@app.get("/stats")
def stats() -> dict[str, int]:
    """Open WebSocket connections, live greenlets and open file descriptors of this worker (leak checks)."""
    greenlets = sum(1 for item in gc.get_objects() if isinstance(item, greenlet.greenlet) and not item.dead)
    return {"open_websockets": metrics.snapshot()["open"], "greenlets": greenlets, "fds": len(os.listdir("/proc/self/fd"))}


@sockets.route("/mixed-compression")
def mixed_compression(ws: WebSocket) -> None:
    """Send one compressed message and one with compression turned off for it; then echo."""
    ws.send(b"compressed " * 50)
    ws.send(b"raw " * 50, compress=False)
    for message in ws:
        ws.send(message)


@sockets.route("/hub/<group>")
def hub_member(ws: WebSocket, group: str) -> None:
    """Join ``group``, say which worker serves us, then publish what the client sends ("flood N SIZE RATE" floods)."""
    hub = current_hub()
    ws.user = request.args.get("user")  # ?user=NAME: reached by send_to_user / disconnect_user
    hub.join(ws, group)
    skip = ws if request.args.get("exclude") else None  # ?exclude=1: what this client sends skips it
    ws.send(json.dumps({"pid": os.getpid()}))
    for message in ws:
        if isinstance(message, str) and message.startswith("flood "):
            _, count, size, rate = message.split()
            for number in range(int(count)):
                hub.publish(group, f"{number:08d}".encode() + b"x" * (int(size) - 8))
                if number % 50 == 49:
                    time.sleep(50 / float(rate))  # a steady publisher, slower than any healthy reader
        else:
            hub.publish(group, message, exclude=skip)


@app.get("/metrics")
def metrics_page() -> Response:
    """Every worker's Prometheus metrics."""
    body, content_type = prometheus.exposition()
    return Response(body, content_type=content_type)


@app.get("/hub-stats")
def hub_stats() -> dict[str, object]:
    """This worker's hub: its counters, the groups it has members of (so subscribes to), its pid."""
    hub = current_hub()
    return {**hub.counters.as_dict(), "groups": sorted(hub.groups()), "pid": os.getpid()}


@sockets.route("/presence/<group>")
def presence_member(ws: WebSocket, group: str) -> None:
    """Join ``group`` with presence (``?user=NAME``); with ``?watch=1`` get every join and leave as JSON; echo."""
    hub = current_hub()
    ws.user = request.args.get("user")
    if request.args.get("watch"):

        def tell(kind: str, entry: PresenceEntry) -> None:
            with contextlib.suppress(ConnectionClosed):
                ws.send(json.dumps({"kind": kind, "connection": entry.connection, "user": entry.user, "worker": entry.worker}))

        hub.watch_presence(ws, group, tell)
    hub.join(ws, group, presence=True)
    ws.send(json.dumps({"pid": os.getpid(), "worker": hub.worker}))
    for message in ws:
        ws.send(message)


@app.get("/presence-list/<group>")
def presence_list(group: str) -> dict[str, object]:
    """Who is in ``group`` on every worker of every machine."""
    return {"entries": [entry._asdict() for entry in current_hub().presence(group)], "pid": os.getpid()}


@app.post("/users/<user>/disconnect")
def disconnect_user(user: str) -> dict[str, int]:
    """Close every connection of ``user`` on every worker (``?code=``, ``?reason=``)."""
    return {"workers": current_hub().disconnect_user(user, int(request.args.get("code", "1008")), request.args.get("reason", ""))}


@app.get("/hub-members/<group>")
def hub_members(group: str) -> dict[str, int]:
    """Members of ``group`` in this worker, and how many workers anywhere have members of it."""
    hub = current_hub()
    return {"members": hub.members(group), "workers": hub.workers(group), "pid": os.getpid()}


def _report_options(ws: WebSocket) -> None:
    """Send the options this connection runs with, then echo."""
    options = ws.options
    ws.send(json.dumps({"max_message_size": options.max_message_size, "keep_alive_interval": options.keep_alive_interval}))
    for message in ws:
        ws.send(message)


@sockets.route("/route/small", max_message_size=100)
def small_messages(ws: WebSocket) -> None:
    """Per-route options: messages over 100 bytes close this route's connections with 1009."""
    _report_options(ws)


@sockets.route("/route/pings", keep_alive_interval=0.2)
def frequent_pings(ws: WebSocket) -> None:
    """Per-route options: this route pings after 0.2 s of silence (the process default is 120 s)."""
    _report_options(ws)


@sockets.route("/route/narrow", allowed_origins=["https://app.example"])
def narrow_origins(ws: WebSocket) -> None:
    """Per-route options: only https://app.example may connect here."""
    _report_options(ws)


@sockets.route("/echo", bp=rooms)
def room_echo(ws: WebSocket) -> None:
    """A route on a blueprint, served under the blueprint's prefix."""
    for message in ws:
        ws.send(message)


app.register_blueprint(rooms, url_prefix="/rooms")


@sockets.route("/firehose")
def firehose(ws: WebSocket) -> None:
    """Send 64 KiB messages until the connection ends (a client that never reads meets send_timeout); log how it ended."""
    chunk = b"x" * 65536
    try:
        while True:
            ws.send(chunk)
    except ConnectionClosed as exc:
        app.logger.warning("firehose ended: %s code=%s reason=%r", type(exc).__name__, exc.close_code, exc.close_reason)
