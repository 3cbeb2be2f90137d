"""websockets 17.4 asyncio echo server (the default asyncio event loop, no uvloop).

    python bench/servers/websockets_echo.py PORT

max_size=None (no message limit). BENCH_PING_INTERVAL sets ping_interval (default: websockets' own, 20 s).
"""

from __future__ import annotations

import asyncio
import os
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    ping = float(os.environ.get("BENCH_PING_INTERVAL", "20"))
    async with serve(echo, "127.0.0.1", port, max_size=None, ping_interval=ping or None, backlog=2048) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
