"""Re-fragmenting of incoming frames for partial reads, I/O free.

A browser sends a 100 MiB message as one frame, and a frame parser hands a frame over only once all of it has
arrived. To let a handler stream such a message with memory bounded by ``receive_buffer_size``, the bytes from the
network pass through a :class:`FrameSplitter` before the protocol parser sees them: every masked data frame longer
than the chunk size is rewritten, as its bytes arrive, into fragments of at most that size (RFC 6455 §5.4 lets a
message be fragmented anywhere). The masked payload bytes are not touched: each new fragment header carries the
masking key rotated to the fragment's offset (§5.3), so unmasking yields the same data. Everything else (control
frames, small frames, frames that break a rule) passes through unchanged for the parser to accept or refuse, except
three header violations that would otherwise make the parser buffer a huge payload before refusing it.
"""

from __future__ import annotations

import struct

__all__ = ["FrameSplitter", "SplitterError"]

_HEAD2 = struct.Struct("!BB")
_HEAD4 = struct.Struct("!BBH")
_HEAD10 = struct.Struct("!BBQ")


class SplitterError(ValueError):
    """A frame header that breaks RFC 6455 in a way the splitter refuses itself (close code 1002)."""


class FrameSplitter:
    """Feed bytes in with :meth:`feed`; get bytes out whose data frames are at most ``chunk_size`` long."""

    def __init__(self, chunk_size: int, allow_rsv1: bool = False) -> None:
        self.chunk_size = chunk_size
        self.allow_rsv1 = allow_rsv1
        self._header = bytearray()
        self._passthrough = 0  # payload bytes still to copy unchanged
        self._split_remaining = 0  # payload bytes still to re-fragment
        self._split_offset = 0
        self._split_first = True
        self._split_head1 = 0  # fin/rsv1/opcode of the original frame
        self._split_key = b""

    def feed(self, data: bytes) -> bytes:
        """Return the rewritten bytes for ``data`` (possibly empty while a header is incomplete)."""
        out: list[bytes] = []
        view = memoryview(data)
        position, end = 0, len(data)
        while position < end:
            if self._passthrough:
                take = min(self._passthrough, end - position)
                out.append(view[position : position + take].tobytes())
                self._passthrough -= take
                position += take
            elif self._split_remaining:
                take = min(self._split_remaining, end - position, self.chunk_size)
                out.append(self._fragment_header(take))
                out.append(view[position : position + take].tobytes())
                position += take
            else:
                position = self._read_header(view, position, end, out)
        return b"".join(out)

    def _read_header(self, view: memoryview, position: int, end: int, out: list[bytes]) -> int:
        header = self._header
        needed = 2
        while True:
            if len(header) < needed:
                take = min(needed - len(header), end - position)
                header += view[position : position + take]
                position += take
                if len(header) < needed:
                    return position
            if needed == 2:
                size_field = header[1] & 0x7F
                needed = 2 + (2 if size_field == 126 else 8 if size_field == 127 else 0) + (4 if header[1] & 0x80 else 0)
                if needed > 2:
                    continue
            break
        self._start_frame(bytes(header), out)
        self._header = bytearray()
        return position

    def _start_frame(self, header: bytes, out: list[bytes]) -> None:
        head1, head2 = header[0], header[1]
        size_field = head2 & 0x7F
        if size_field == 126:
            length = struct.unpack_from("!H", header, 2)[0]
        elif size_field == 127:
            length = struct.unpack_from("!Q", header, 2)[0]
            if length >> 63:
                raise SplitterError("the most significant bit of a 64-bit payload length must be 0 (RFC 6455 §5.2)")
        else:
            length = size_field
        opcode = head1 & 0x0F
        if head1 & 0x30 or (head1 & 0x40 and not self.allow_rsv1):
            raise SplitterError("reserved bits set without a negotiated extension (RFC 6455 §5.2)")
        if opcode & 0x08 and length > 125:
            raise SplitterError("control frame payload over 125 bytes (RFC 6455 §5.5)")
        masked = bool(head2 & 0x80)
        if not masked or opcode & 0x08 or length <= self.chunk_size:
            out.append(header)
            self._passthrough = length
            return
        self._split_remaining = length
        self._split_offset = 0
        self._split_first = True
        self._split_head1 = head1
        self._split_key = header[-4:]

    def _fragment_header(self, size: int) -> bytes:
        """The header of the next fragment of a frame being split, for ``size`` payload bytes."""
        last = size == self._split_remaining
        head1 = self._split_head1 & (0x40 | 0x0F) if self._split_first else 0x00  # opcode and RSV1 on the first only
        if last:
            head1 |= self._split_head1 & 0x80  # the original FIN on the last only
        shift = self._split_offset % 4
        key = self._split_key[shift:] + self._split_key[:shift]
        self._split_first = False
        self._split_offset += size
        self._split_remaining -= size
        if size < 126:
            return _HEAD2.pack(head1, 0x80 | size) + key
        if size < 65536:
            return _HEAD4.pack(head1, 0x80 | 126, size) + key
        return _HEAD10.pack(head1, 0x80 | 127, size) + key
