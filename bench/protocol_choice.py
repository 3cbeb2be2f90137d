"""Which sans-I/O core to build on: parse cost of websockets (through our Session), wsproto and gevent-websocket.

Run: python bench/protocol_choice.py   (needs `pip install wsproto==1.3.2`; gevent-websocket is a dependency)

It parses the same masked client frames with each library, in one process, and prints microseconds per small
message (32-byte text frames arriving 16 per read) and MB/s for 1 MiB binary frames. No sockets: this measures
only the protocol code the server runs on every byte it receives.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from frames import masked_frame

from wsgi_ws.protocol import Session


def with_websockets(chunks: list[bytes]) -> int:
    session = Session(None)
    count = 0
    for chunk in chunks:
        session.receive_data(chunk)
        pop = session.assembler.pop_message
        while pop() is not None:
            count += 1
    return count


def with_wsproto(chunks: list[bytes]) -> int:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import Message

    connection = Connection(ConnectionType.SERVER)
    count = 0
    for chunk in chunks:
        connection.receive_data(chunk)
        for event in connection.events():
            if isinstance(event, Message) and event.message_finished:
                count += 1
    return count


def with_gevent_websocket(chunks: list[bytes]) -> int:
    from geventwebsocket.websocket import Stream, WebSocket

    class Handler:
        rfile = io.BytesIO(b"".join(chunks))

        class socket:
            @staticmethod
            def sendall(data: bytes) -> None:
                pass

    handler = Handler()
    ws = WebSocket({}, Stream(handler), handler)
    count = 0
    while handler.rfile.tell() < len(handler.rfile.getbuffer()):
        ws.read_message()
        count += 1
    return count


def measure(parse: Callable[[list[bytes]], int], chunks: list[bytes], expected: int, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs, after checking the message count."""
    assert parse(chunks) == expected, parse
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        parse(chunks)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    small = [b"".join(masked_frame(1, b"x" * 32) for _ in range(16)) for _ in range(2000)]
    small_count = 16 * 2000
    big = [masked_frame(2, os.urandom(1024 * 1024)) for _ in range(8)]
    libraries: dict[str, Callable[[list[bytes]], int]] = {
        "websockets 17 sans-I/O (wsgi_ws.protocol.Session)": with_websockets,
        "wsproto 1.3": with_wsproto,
        "gevent-websocket 0.10.1 (its own framing)": with_gevent_websocket,
    }
    print(f"{'library':52} {'small: us/message':>18} {'1 MiB frames: MB/s':>19}")
    for name, parse in libraries.items():
        small_time = measure(parse, small, small_count)
        big_time = measure(parse, big, len(big), repeat=1 if "gevent" in name else 3)
        print(f"{name:52} {small_time / small_count * 1e6:18.2f} {len(big) * 1.048576 / big_time:19.1f}")


if __name__ == "__main__":
    main()
