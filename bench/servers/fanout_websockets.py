"""websockets 17.4 asyncio fan-out server of bench/fanout.py (the default asyncio event loop, no uvloop).

    python bench/servers/fanout_websockets.py PORT

Subscribers connect to /sub and are kept in a set; every message from a connection to /pub goes to all of them
with ``websockets.asyncio.server.broadcast`` (one write per subscriber, no waiting for slow ones). ``max_size=None``,
default ``ping_interval`` (20 s).
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

SUBSCRIBERS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    if path.startswith("/sub"):
        SUBSCRIBERS.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            SUBSCRIBERS.discard(ws)
    elif path.startswith("/pub"):
        async for message in ws:
            broadcast(SUBSCRIBERS, message)
    else:
        await ws.close(1008, "unknown path")


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_size=None, backlog=2048) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
