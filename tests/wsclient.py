"""A raw WebSocket client for tests: sends exactly the bytes a test asks for, malformed ones included."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct
from dataclasses import dataclass

from tests.constants import TIMEOUT

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass
class Frame:
    """A frame as received from the server."""

    fin: bool
    opcode: int
    payload: bytes
    rsv: int = 0
    masked: bool = False

    @property
    def close_code(self) -> int | None:
        """The close code of a close frame (None when it has no payload)."""
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        """The close reason of a close frame."""
        return self.payload[2:].decode("utf-8")


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True, length: int | None = None
) -> bytes:
    """One client frame; ``length`` forces the 7-bit/16-bit/64-bit length field (126 or 127) of choice."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    mask_bit = 0x80 if mask else 0
    if length == 127 or (length is None and size > 0xFFFF):
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    elif length == 126 or (length is None and size > 125):
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BB", first, mask_bit | size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes((key * (size // 4 + 1))[:size], "big")).to_bytes(size, "big")
    return header + key + masked


def closed_by_server_after(url: str, message: str | bytes) -> tuple[int, str]:
    """Connect to ``url`` with websockets' client, send ``message`` and return the close (code, reason) the server
    answers it with; fails if the server sends anything else."""
    import pytest
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    with connect(url, open_timeout=TIMEOUT) as ws:
        ws.send(message)
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(timeout=TIMEOUT)
    close = caught.value.rcvd
    assert close is not None, "the server cut TCP without a close frame"
    return close.code, close.reason


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame."""
    return struct.pack("!H", code) + reason.encode("utf-8")


def upgrade_request(path: str = "/ws", host: str = "127.0.0.1", headers: dict[str, str] | None = None, omit: tuple[str, ...] = ()) -> bytes:
    """An upgrade request; ``headers`` add or replace header lines, ``omit`` drops them."""
    fields = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers or {})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if k not in omit]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    """An HTTP response head and whatever body bytes arrived with it."""

    status: int
    headers: dict[str, str]
    body: bytes


class RawClient:
    """A socket to the server with helpers to send frames and read the server's frames."""

    def __init__(self, port: int, timeout: float = TIMEOUT, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls.wrap_socket(sock, server_hostname="127.0.0.1") if tls is not None else sock
        self.buffer = b""

    def close(self) -> None:
        """Close the TCP connection."""
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def _take(self, size: int) -> bytes:
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self) -> Response:
        """Read an HTTP response head (and the body, if Content-Length says so)."""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before the response head: {self.buffer!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            self._fill(int(headers["content-length"]))
            body = self._take(int(headers["content-length"]))
        return Response(status, headers, body)

    def handshake(self, path: str = "/ws", headers: dict[str, str] | None = None) -> Response:
        """Upgrade; asserts 101."""
        self.send(upgrade_request(path, headers=headers))
        response = self.read_response()
        assert response.status == 101, response
        return response

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        """Send one client frame (see :func:`encode_frame`)."""
        self.send(encode_frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def read_frame(self) -> Frame | None:
        """The next server frame, or None at EOF."""
        if not self._fill(2):
            return None
        first, second = self.buffer[0], self.buffer[1]
        size = second & 0x7F
        offset = 2
        if size == 126:
            if not self._fill(4):
                return None
            size = struct.unpack("!H", self.buffer[2:4])[0]
            offset = 4
        elif size == 127:
            if not self._fill(10):
                return None
            size = struct.unpack("!Q", self.buffer[2:10])[0]
            offset = 10
        masked = bool(second & 0x80)
        if masked:
            offset += 4
        if not self._fill(offset + size):
            return None
        self._take(offset)
        return Frame(bool(first & 0x80), first & 0x0F, self._take(size), (first >> 4) & 0x7, masked)

    def read_message(self) -> tuple[int, bytes]:
        """Read data frames until one message is whole; returns (opcode, payload)."""
        frame = self.read_frame()
        assert frame is not None and frame.opcode in (OP_TEXT, OP_BINARY), frame
        opcode, parts = frame.opcode, [frame.payload]
        while not frame.fin:
            frame = self.read_frame()
            assert frame is not None and frame.opcode == OP_CONT, frame
            parts.append(frame.payload)
        return opcode, b"".join(parts)

    def expect_close(self, reply: bool = False) -> Frame:
        """Read until the server's close frame (answer it if ``reply``), then expect TCP to close; returns the frame."""
        while True:
            frame = self.read_frame()
            assert frame is not None, "EOF before a close frame"
            if frame.opcode == OP_CLOSE:
                break
        assert not frame.masked and frame.fin
        if reply:
            self.send_frame(OP_CLOSE, frame.payload)
        self.expect_eof()
        return frame

    def expect_eof(self) -> None:
        """Expect the server to close TCP (reading nothing else)."""
        rest = self.buffer + self.sock.recv(65536)
        assert rest == b"", f"expected EOF, got {rest!r}"
