"""The small-message hot path alone: ``WebSocket.receive()`` + ``send()`` of 32-byte text, 16 frames per read.

A fake socket stands in for the network (no system calls, no gevent), so the number is the library's own Python
work per message. Wall clock (best of 7):

    python bench/hot_path.py [CHECKOUT]

Instructions, which do not depend on how busy the machine is: run it under callgrind at two sizes and divide the
difference by the difference in messages (the start-up cancels out)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/hot_path.py . 16000 --once
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/hot_path.py . 48000 --once

CHECKOUT (default: this one) may be an older checkout of wsgi-ws, to compare before and after a change.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

root = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
count = int(sys.argv[2]) if len(sys.argv) > 2 else 160_000
once = "--once" in sys.argv
sys.path.insert(0, root)

from wsgi_ws.options import WebSocketOptions  # noqa: E402

try:
    from wsgi_ws.connection.websocket import WebSocket
    from wsgi_ws.protocol.handshake import HandshakeRequest
except ImportError:  # a checkout from before the redesign (issue 13)
    from wsgi_ws.handshake import HandshakeRequest  # type: ignore[no-redef]
    from wsgi_ws.websocket import WebSocket  # type: ignore[no-redef]

MASK = b"\x01\x02\x03\x04"
FRAME = b"\x81\x9f" + MASK + bytes(b ^ k for b, k in zip(b"x" * 31, MASK * 8, strict=False))
BATCH = FRAME * 16


class FakeSocket:
    """Gives ``reads`` batches of 16 frames, then EOF; takes every write whole."""

    def __init__(self, reads: int) -> None:
        self.reads = reads

    def recv(self, size: int) -> bytes:
        if self.reads <= 0:
            return b""
        self.reads -= 1
        return BATCH

    def send(self, data: bytes) -> int:
        return len(data)

    def sendall(self, data: bytes) -> None:
        pass

    def settimeout(self, timeout: Any) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass


def run() -> float:
    request = HandshakeRequest(key="dGhlIHNhbXBsZSBub25jZQ==", origin=None, subprotocols=())
    ws = WebSocket(FakeSocket(count // 16), {"PATH_INFO": "/"}, request, WebSocketOptions())  # type: ignore[arg-type]
    ws.accept()
    receive, send = ws.receive, ws.send
    start = time.perf_counter()
    for _ in range(count):
        message = receive()
        assert message is not None
        send(message)
    return time.perf_counter() - start


if once:
    run()
else:
    best = min(run() for _ in range(7))
    print(f"{root}: {best / count * 1e6:.3f} us per message (best of 7, {count} messages)")
