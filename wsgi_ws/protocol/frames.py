"""Every frame byte wsgi-ws reads or writes by hand, I/O free: the server's frame headers, the fast path for whole
simple frames, and the re-fragmenting of incoming frames (fail-fast UTF-8 checks, bounded-memory partial reads).

Everything else about frames (the careful parser, control frames, close payloads, compression) is the work of the
``websockets`` package's sans-I/O layer; this module holds only what profiles or RFC rules made us write ourselves.

Writing (:func:`add_server_frame`): an unmasked, unfragmented, uncompressed server frame is a 2-10 byte header and the
payload (RFC 6455 §5.2); websockets' ``Frame.serialize`` was a hot spot.

Reading whole simple frames (:func:`read_simple_frames`): see its docstring.

Re-fragmenting (:class:`FrameSplitter`):

A frame parser hands a frame over only once all of it has arrived. Two things need more: RFC 6455 §8.1 wants
invalid UTF-8 refused as soon as it arrives, even in the middle of a frame (Autobahn 6.4.x), and a handler that
streams a 100 MiB message (a browser sends it as one frame) needs memory bounded by ``receive_buffer_size``. So the
bytes from the network pass through a :class:`FrameSplitter` before the parser sees them: a masked data frame that
has not fully arrived, or (when streaming) is longer than the chunk size, is rewritten, as its bytes arrive, into
fragments (RFC 6455 §5.4 lets a message be fragmented anywhere). The masked payload bytes are not touched: each new
fragment header carries the masking key rotated to the fragment's offset (§5.3), so unmasking yields the same data.
A frame that is all there passes through unchanged, as does anything the parser must judge (control frames,
unmasked frames, frames over the size limit), except three header violations that would otherwise make the parser
wait for a huge payload before refusing it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

__all__ = [
    "NO_LIMIT",
    "DeflateParams",
    "FrameSplitter",
    "SplitterError",
    "add_server_frame",
    "deflate_frame",
    "read_simple_frames",
    "server_frame",
]

#: permessage-deflate settings of a connection whose server side resets its context after every message
#: (``server_no_context_takeover``): window bits, zlib level, zlib memory level. Every connection with the same
#: three gets byte-identical compressed frames, so a broadcast compresses once per set (:func:`deflate_frame`).
DeflateParams = tuple[int, int, int]

#: A payload length above it has the most significant bit set, which RFC 6455 §5.2 forbids: the careful path refuses it.
NO_LIMIT = (1 << 63) - 1
#: Payloads up to this size are joined with their header into one bytes object; larger ones stay a separate chunk.
JOIN_PAYLOAD = 1024

_HEAD2 = struct.Struct("!BB")
_HEAD4 = struct.Struct("!BBH")
_HEAD10 = struct.Struct("!BBQ")
_PACK2, _PACK4, _PACK10 = _HEAD2.pack, _HEAD4.pack, _HEAD10.pack


class SplitterError(ValueError):
    """A frame header that breaks RFC 6455 in a way the splitter refuses itself (close code 1002).

    :meth:`FrameSplitter.feed` does not raise it: it returns the frames before the bad header and sets ``error``.
    """


class FrameSplitter:
    """Feed bytes in with :meth:`feed`; get out complete frames only, data frames at most ``chunk_size`` long.

    ``chunk_size`` None splits only frames that have not fully arrived; ``max_frame_size`` frames are left whole for
    the parser to refuse.
    """

    __slots__ = (  # one per open connection: no per-instance dict
        "_header",
        "_passthrough",
        "_split_first",
        "_split_head1",
        "_split_key",
        "_split_offset",
        "_split_remaining",
        "_transparent",
        "allow_rsv1",
        "chunk_size",
        "error",
        "max_frame_size",
    )

    def __init__(self, chunk_size: int | None = None, allow_rsv1: bool = False, max_frame_size: int | None = None) -> None:
        self.chunk_size = chunk_size
        self.allow_rsv1 = allow_rsv1
        self.max_frame_size = max_frame_size
        self._header = bytearray()
        self._passthrough = 0  # payload bytes still to copy unchanged
        self._split_remaining = 0  # payload bytes still to re-fragment
        self._split_offset = 0
        self._split_first = True
        self._split_head1 = 0  # fin/rsv1/opcode of the original frame
        self._split_key = b""
        self._transparent = False  # set after a close frame or a refused header
        #: The violation that stopped the splitter, if any (the caller fails the connection with 1002).
        self.error: SplitterError | None = None

    @property
    def idle(self) -> bool:
        """True between frames: nothing of a frame is pending and the next byte is read as a frame header."""
        return not (self._header or self._passthrough or self._split_remaining or self._transparent)

    def feed(self, data: bytes) -> bytes:
        """Return the rewritten bytes for ``data`` (possibly empty while a header is incomplete).

        After a header that breaks a rule, returns what came before it, sets :attr:`error` and passes nothing more.
        """
        if self._transparent:
            return data
        if not self._header and not self._passthrough and not self._split_remaining:
            whole = self._whole_frames_end(data)
            if whole == len(data):
                return data  # the common case: only complete frames that need no rewriting
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
                take = min(self._split_remaining, end - position, self.chunk_size or end)
                out.append(self._fragment_header(take))
                out.append(view[position : position + take].tobytes())
                position += take
            elif self._transparent:  # after a close frame the parser reads nothing more: do not interpret it
                out.append(view[position:].tobytes())
                break
            else:
                try:
                    position = self._read_header(view, position, end, out)
                except SplitterError as exc:
                    self.error = exc  # the frames before the bad header still count
                    self._transparent = True
                    break
        return b"".join(out)

    def _whole_frames_end(self, data: bytes) -> int:
        """Where the run of complete frames at the start of ``data`` that pass through unchanged ends."""
        position, end = 0, len(data)
        chunk_size = self.chunk_size
        while position + 2 <= end:
            head1, head2 = data[position], data[position + 1]
            size = head2 & 0x7F
            offset = 2
            if size == 126:
                if position + 4 > end:
                    return position
                size = (data[position + 2] << 8) | data[position + 3]
                offset = 4
            elif size == 127:
                if position + 10 > end:
                    return position
                size = int.from_bytes(data[position + 2 : position + 10], "big")
                if size >> 63:
                    return position  # refused on the careful path
                offset = 10
            if head2 & 0x80:
                offset += 4
            if head1 & 0x0F == 0x08 or head1 & 0x30 or (head1 & 0x40 and not self.allow_rsv1) or (head1 & 0x08 and size > 125):
                return position  # header violations take the careful path, which refuses them
            if chunk_size is not None and size > chunk_size and not head1 & 0x08:
                return position  # a data frame to split
            if position + offset + size > end:
                return position
            position += offset + size
        return position

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
        self._start_frame(bytes(header), end - position, out)
        self._header = bytearray()
        return position

    def _start_frame(self, header: bytes, available: int, out: list[bytes]) -> None:
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
        if opcode == 0x08:
            self._transparent = True
        if head1 & 0x30 or (head1 & 0x40 and not self.allow_rsv1):
            raise SplitterError("reserved bits set without a negotiated extension (RFC 6455 §5.2)")
        if opcode & 0x08 and length > 125:
            raise SplitterError("control frame payload over 125 bytes (RFC 6455 §5.5)")
        masked = bool(head2 & 0x80)
        too_big = self.max_frame_size is not None and length > self.max_frame_size
        must_split = (self.chunk_size is not None and length > self.chunk_size) or length > available
        if not masked or opcode & 0x08 or too_big or not must_split:
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


def _header(first: int, size: int) -> bytes:
    """The 2-10 byte header of an unmasked server frame: first byte ``first``, payload length ``size``."""
    if size < 126:
        return _PACK2(first, size)
    if size < 65536:
        return _PACK4(first, 126, size)
    return _PACK10(first, 127, size)


def add_server_frame(out: list[bytes], payload: bytes, text: bool) -> None:
    """Append one final, unmasked, uncompressed data frame to ``out``: its header and payload, joined when small."""
    size = len(payload)
    first = 0x81 if text else 0x82
    if size < 126:  # the common case, without a call
        out.append(_PACK2(first, size) + payload)
    elif size <= JOIN_PAYLOAD:
        out.append(_header(first, size) + payload)
    else:
        out += (_header(first, size), payload)


def server_frame(payload: bytes, text: bool) -> bytes:
    """One final, unmasked, uncompressed data frame as one ``bytes``: built once, written to many connections."""
    return _header(0x81 if text else 0x82, len(payload)) + payload


def deflate_frame(payload: bytes, text: bool, params: DeflateParams) -> bytes:
    """One final data frame compressed with a fresh context (RFC 7692 §7.2.1), RSV1 set, for every connection of ``params``.

    The same bytes websockets' ``PerMessageDeflate`` produces for a connection that resets its context after every
    message: deflate, a sync flush, the trailing ``00 00 ff ff`` removed.
    """
    window_bits, level, memory_level = params
    encoder = zlib.compressobj(level, zlib.DEFLATED, -window_bits, memory_level)
    data = encoder.compress(payload) + encoder.flush(zlib.Z_SYNC_FLUSH)
    return _header(0xC1 if text else 0xC2, len(data) - 4) + data[:-4]  # a sync flush always ends with 00 00 ff ff


def read_simple_frames(data: bytes, limit: int, append: Callable[[str | bytes], object], pong: Callable[[], object] | None = None) -> int:
    """Append the messages of the complete simple frames at the start of ``data``; return where they end.

    The common case, a read holding whole small messages, parsed here with plain indexing, websockets' C
    ``apply_mask`` and C UTF-8 decoding instead of websockets' generator-based parser, which profiles showed costing
    about half the server's time on small messages. A simple frame is one whose outcome is certain: FIN set, RSV bits
    clear, opcode text or binary, masked, a payload under ``limit`` that is all in ``data``, and for text, valid
    UTF-8. For such a frame the careful parser would only append the same message: no state changes for a final data
    frame between messages. With ``pong``, a whole masked pong of at most 125 bytes is simple too (keep-alive
    answers): ``pong()`` is called and its payload skipped, as the careful path would. The caller must call this only
    between messages (no fragmented message under way, nothing half fed to the parser); it stops at the first frame
    that is anything else (a control frame, a fragment, a partial frame, a violation, invalid UTF-8), and the caller
    feeds the rest, from that frame on, to the careful path, which then sees exactly the bytes it would have seen after
    the frames before it: the outcome is the same.
    """
    end = len(data)
    position = 0
    while position + 6 <= end:  # 6 bytes: the smallest masked frame
        head1 = data[position]
        if head1 != 0x81 and head1 != 0x82:  # FIN, no RSV bit, text (1) or binary (2)
            if head1 == 0x8A and pong is not None:  # FIN, pong
                length = data[position + 1] ^ 0x80
                if length < 126 and length < limit and position + 6 + length <= end:
                    pong()
                    position += 6 + length
                    continue
            break
        length = data[position + 1] ^ 0x80  # the MASK bit must be set: unmasked frames give 128-255
        if length < 126:
            start = position + 6
        elif length == 126:
            length = (data[position + 2] << 8) | data[position + 3]
            start = position + 8
        elif length == 127:
            length = int.from_bytes(data[position + 2 : position + 10], "big")
            start = position + 14
        else:
            break
        stop = start + length
        if stop > end or length >= limit:
            break
        payload = apply_mask(data[start:stop], data[start - 4 : start])
        if head1 == 0x81:
            try:
                append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                break  # the careful path fails the connection with 1007 and its usual reason
        else:
            append(payload)
        position = stop
    return position
