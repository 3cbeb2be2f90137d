"""The "raw gevent limit" of bench/fanout.py: the least a gevent fan-out server can do in CPython. Not a product.

    python bench/servers/fanout_raw_gevent.py PORT

A gevent StreamServer that answers the upgrade by hand. Connections to /sub are kept in a list and their input is
read and thrown away; the text and binary frames of each read from a connection to /pub are framed once (unmasked)
into one buffer, and each subscriber in turn gets one ``sendall`` of it: one prebuilt frame per message, and several
messages in one system call when the publisher's read held several (as ``raw_gevent_echo.py`` answers each read).
No validation, no limits, no pings, no queue: a subscriber whose socket is full holds up the publisher, whose
messages then wait in its socket and arrive in larger reads. That is the ceiling of one greenlet and one
``sendall`` per subscriber per read in CPython, not a design.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from collections.abc import Iterator

from gevent.server import StreamServer
from gevent.socket import socket
from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
SUBSCRIBERS: list[socket] = []


def _header(first: int, size: int) -> bytes:
    if size < 126:
        return struct.pack("!BB", first, size)
    if size < 65536:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


def _upgrade(sock: socket) -> tuple[bytes, bytearray] | None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) > 65536:
            return None
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    path = lines[0].split(b" ")[1] if len(lines[0].split(b" ")) > 1 else b""
    key = b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if not key:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return None
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return path, bytearray(rest)


def _reads(sock: socket, buf: bytearray) -> Iterator[list[tuple[int, bytes]]]:
    """Yield the (opcode, unmasked payload) of every complete frame of each read, until the client closes."""
    recv = sock.recv
    while True:
        frames = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = _U16.unpack_from(buf, pos + 2)[0], pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = _U64.unpack_from(buf, pos + 2)[0], pos + 10
            if second & 0x80:
                start += 4
            end = start + length
            if end > size:
                break
            payload = bytes(buf[start:end])
            if second & 0x80:
                payload = apply_mask(payload, bytes(buf[start - 4 : start]))
            pos = end
            frames.append((first & 0x0F, payload))
        if pos:
            del buf[:pos]
        if frames:
            yield frames
        data = recv(262144)
        if not data:
            return
        buf += data


def handle(sock: socket, address: object) -> None:
    upgraded = _upgrade(sock)
    if upgraded is None:
        return
    path, buf = upgraded
    subscriber = path.startswith(b"/sub")
    if subscriber:
        SUBSCRIBERS.append(sock)
    try:
        for frames in _reads(sock, buf):
            out = []
            for opcode, payload in frames:
                if opcode == 0x8:
                    sock.sendall(_header(0x88, len(payload[:2])) + payload[:2])
                    return
                if opcode == 0x9:
                    sock.sendall(_header(0x8A, len(payload)) + payload)
                elif not subscriber and opcode in (0x1, 0x2):
                    out.append(_header(0x80 | opcode, len(payload)) + payload)
            if out:
                blob = b"".join(out)  # the messages of one read from the publisher, framed once for everyone
                for target in list(SUBSCRIBERS):
                    try:
                        target.sendall(blob)
                    except OSError:
                        if target in SUBSCRIBERS:
                            SUBSCRIBERS.remove(target)
    except OSError:
        pass
    finally:
        if subscriber and sock in SUBSCRIBERS:
            SUBSCRIBERS.remove(sock)


if __name__ == "__main__":
    StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=2048).serve_forever()
