"""picows (compiled) echo server on uvloop: not a peer, only the proof that the load generator is not the bottleneck.

    python bench/servers/picows_echo.py PORT

Like the raw gevent server it answers every frame parsed from one read with one write (picows parses in C and
tells the listener which frame is the last of the read), so the generator gets its echoes in batches as it sends them.
"""

from __future__ import annotations

import struct
import sys

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

_H2 = struct.Struct("!BB")
_H4 = struct.Struct("!BBH")
_H10 = struct.Struct("!BBQ")


class Echo(WSListener):
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self.flush(transport)
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if kind != WSMsgType.PONG:
            first = (0x80 if frame.fin else 0) | (WSMsgType.PONG.value if kind == WSMsgType.PING else kind.value)
            size = frame.payload_size
            if size < 126:
                header = _H2.pack(first, size)
            elif size < 65536:
                header = _H4.pack(first, 126, size)
            else:
                header = _H10.pack(first, 127, size)
            self.out.append(header)
            self.out.append(frame.get_payload_as_bytes())
        if frame.last_in_buffer:
            self.flush(transport)

    def flush(self, transport: WSTransport) -> None:
        if self.out:
            transport.underlying_transport.write(b"".join(self.out))
            self.out.clear()


def listener(request: WSUpgradeRequest) -> WSListener:
    return Echo()


async def main(port: int) -> None:
    server = await ws_create_server(listener, "127.0.0.1", port, max_frame_size=64 * 1024 * 1024, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
