"""The app of bench/soak.py: the sample's echo at /ws, a route that never stops sending, and a per-worker probe.

    SOAK_PROBE_DIR=/tmp/dir WSGI_WS_BIND=127.0.0.1:PORT gunicorn -c gunicorn.conf.py --pythonpath bench/servers soak_app:app

Run from the project root (so gunicorn.conf.py and wsgi_ws are found).

- ``/ws`` echoes every message back, text as text and binary as binary (the sample app's handler, unchanged).
- ``/firehose`` sends 16 KiB binary messages for as long as the connection lasts, yielding to the other greenlets
  between two sends: for the client that never reads (the worker's send must give up on it, ``send_timeout``).
- The probe, bench-only: with ``SOAK_PROBE_DIR`` set, every worker listens on ``SOAK_PROBE_DIR/<pid>.sock`` (a Unix
  socket of its own, so the generator reaches each worker in turn instead of whichever one gunicorn's shared port
  hands the request to) and answers each connection with one JSON line: its pid, its live greenlets (a walk of
  ``gc.get_objects()``: about 100 ms with 5,000 connections, so sample it rarely), its open WebSockets and totals
  (``wsgi_ws.metrics``) and the objects the collector tracks.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import time
from typing import Any

import greenlet
from flask import Flask

from wsgi_ws import WebSocket, metrics
from wsgi_ws.flask_ext import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)
FIREHOSE_CHUNK = b"\x00" * 16384


@sockets.route("/ws")
def echo(ws: WebSocket) -> None:
    """Echo every message back, text as text and binary as binary, until the client closes."""
    for message in ws:
        ws.send(message)


@sockets.route("/firehose")
def firehose(ws: WebSocket) -> None:
    """Send 16 KiB binary messages until the connection ends (a send to a closed connection raises and ends this)."""
    while True:
        ws.send(FIREHOSE_CHUNK)
        time.sleep(0)  # gevent's: lets the other greenlets run while a fast reader keeps the socket writable


def probe() -> dict[str, Any]:
    """This worker's pid, live greenlets, WebSocket counters and gc-tracked objects."""
    objects = gc.get_objects()
    greenlets = sum(1 for o in objects if isinstance(o, greenlet.greenlet) and not o.dead)
    tracked = len(objects)
    del objects
    return {"pid": os.getpid(), "greenlets": greenlets, "gc_objects": tracked, **metrics.snapshot()}


def _answer(conn: socket.socket, _address: object) -> None:
    try:
        conn.sendall(json.dumps(probe()).encode() + b"\n")
    finally:
        conn.close()


def _start_probe() -> None:
    """Listen on SOAK_PROBE_DIR/<pid>.sock in this worker (gunicorn imports the app in each worker, after gevent's patch)."""
    directory = os.environ.get("SOAK_PROBE_DIR")
    if not directory:
        return
    from gevent.server import StreamServer
    from gevent.socket import socket as gevent_socket

    path = os.path.join(directory, f"{os.getpid()}.sock")
    listener = gevent_socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    StreamServer(listener, _answer).start()


_start_probe()
