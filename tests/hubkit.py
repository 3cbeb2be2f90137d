"""The hub's socket-tier test kit: a hub over real WebSockets on socketpairs, whose fan-out passes and background
work run only when the test says so (``Setup``; the ``setup`` fixture in conftest.py makes one per test)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from tests.constants import TIMEOUT
from tests.fakes import Spawner
from tests.wsclient import RawClient
from wsgi_ws.connection.websocket import WebSocket
from wsgi_ws.hub import Hub, MemoryBackend
from wsgi_ws.hub.backends import READY, CloseRequest, Receiver, Waitable
from wsgi_ws.hub.history import History
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.assembler import Message
from wsgi_ws.protocol.handshake import HandshakeRequest

__all__ = ["DEFLATE", "KEY", "Peer", "RecordingBackend", "Setup"]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
DEFLATE = (("permessage-deflate", [("client_max_window_bits", None)]),)


class Peer(RawClient):
    """The client end of a socketpair, past the 101."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        sock.settimeout(TIMEOUT)
        assert self.read_response().status == 101

    def messages(self, count: int) -> list[tuple[int, bytes]]:
        return [self.read_message() for _ in range(count)]


class RecordingBackend(MemoryBackend):
    """The in-memory backend, recording subscriptions and what was published."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.senders: list[bytes] = []

    def start(self, receiver: Receiver) -> None:
        super().start(receiver)

    def subscribe(self, group: str) -> Waitable:
        self.subscribed.append(group)
        return READY

    def unsubscribe(self, group: str) -> None:
        self.unsubscribed.append(group)

    def publish(
        self, group: str, message: Message | bytearray | memoryview | CloseRequest, sender: bytes = b"", history: History | None = None
    ) -> int:
        self.senders.append(sender)
        return super().publish(group, message, sender, history)


class Setup:
    """A hub whose fan-out passes and background work run only when the test says so."""

    def __init__(self) -> None:
        self.backend = RecordingBackend()
        self.spawn = Spawner()
        self.passes: list[Callable[[], None]] = []
        self.hub = Hub(self.backend, self.spawn, defer=self.passes.append)
        self.sockets: list[socket.socket] = []

    def connect(self, extensions: tuple[Any, ...] = (), buffer: int | None = None, **options: Any) -> tuple[WebSocket, Peer]:
        server, client = socket.socketpair()
        if buffer is not None:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        self.sockets += (server, client)
        request = HandshakeRequest(key=KEY, origin=None, subprotocols=(), extensions=extensions)
        ws = WebSocket(server, {"PATH_INFO": "/hub"}, request, WebSocketOptions(**options))
        ws.accept()
        return ws, Peer(client)

    def run(self) -> None:
        """One turn of the event loop: the fan-out passes, then what they started."""
        while self.passes:
            self.passes.pop(0)()
        self.spawn.run_all()
