"""The Flask-SocketIO fan-out app of bench/fanout.py: subscribers join room "bench" on connect, "pub" events go to it.

    gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker -w 1 --chdir bench/servers fanout_socketio:app

Flask-SocketIO 5.7 (python-socketio 5.18, python-engineio 4.15) in gevent mode. With gevent-websocket installed (it
is: requirements.txt) engineio's gevent driver takes its WebSocket from ``environ["wsgi.websocket"]``, which only
gevent-websocket's worker provides: under plain ``-k gevent`` every upgrade fails with "The gevent-websocket server
is not configured appropriately". A client is a subscriber when it connects with ``?role=sub``. With
``BENCH_MESSAGE_QUEUE=redis://...`` every emit goes through Redis pub/sub (``message_queue=``), so it reaches the
members of the room in every worker.

Each event runs in a greenlet of its own (``async_handlers``, Flask-SocketIO's default) except with Redis: there
``emit`` waits on the network, the publisher's events overtake each other and subscribers get messages out of order,
so the Redis variant handles them one after another (``async_handlers=False``). Not in memory as well: there the
publisher's reader would then never yield while its socket has data, and under overload (scenario 2) nothing at all
would be delivered.
"""

from __future__ import annotations

import os

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room

app = Flask(__name__)
QUEUE = os.environ.get("BENCH_MESSAGE_QUEUE") or None
socketio = SocketIO(
    app,
    async_mode="gevent",
    message_queue=QUEUE,
    transports=["websocket"],
    async_handlers=QUEUE is None,  # with Redis: the publisher's events one after another, in order (see above)
)


@socketio.on("connect")
def connect() -> None:
    if request.args.get("role") == "sub":
        join_room("bench")


@socketio.on("pub")
def publish(data: str) -> None:
    emit("m", data, to="bench")
