"""Client frames for the benchmarks: built and masked once, before any clock starts."""

from __future__ import annotations

import os
import struct

from websockets.speedups import apply_mask


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One complete client frame (FIN set), masked with a random key, ready to write."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, size)
    return header + key + apply_mask(payload, key)
