"""The "raw gevent limit": the least a gevent greenlet-per-connection echo server can do in CPython. Not a product.

    python bench/servers/raw_gevent_echo.py PORT

A gevent StreamServer that answers the upgrade, parses frames with struct, unmasks with websockets' C apply_mask,
and answers every frame of one read in one sendall. No validation (UTF-8, RSV bits, sizes), no limits, no pings.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys

from gevent.server import StreamServer
from gevent.socket import socket
from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_H2 = struct.Struct("!BB")
_H4 = struct.Struct("!BBH")
_H10 = struct.Struct("!BBQ")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


def _header(first: int, size: int) -> bytes:
    if size < 126:
        return _H2.pack(first, size)
    if size < 65536:
        return _H4.pack(first, 126, size)
    return _H10.pack(first, 127, size)


def handle(sock: socket, address: object) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) > 65536:
            return
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    key = b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if not key:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    buf = bytearray(rest)
    recv, sendall = sock.recv, sock.sendall
    while True:
        out: list[bytes] = []
        pos, size, closing = 0, len(buf), False
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
            payload = buf[start:end]
            if second & 0x80:
                payload = apply_mask(payload, bytes(buf[start - 4 : start]))
            pos = end
            opcode = first & 0x0F
            if opcode == 0x8:
                out.append(_header(0x88, len(payload[:2])) + payload[:2])
                closing = True
                break
            if opcode == 0x9:
                out.append(_header(0x8A, length) + payload)
            elif opcode != 0xA:
                out.append(_header(first & 0x8F, length) + payload)
        if pos:
            del buf[:pos]
        if out:
            sendall(b"".join(out))
        if closing:
            return
        data = recv(262144)
        if not data:
            return
        buf += data


if __name__ == "__main__":
    StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=2048).serve_forever()
