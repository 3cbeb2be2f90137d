"""permessage-deflate (RFC 7692) negotiation, I/O free, on the ``websockets`` package's implementation.

The server accepts the first ``permessage-deflate`` offer it can satisfy and declines the others; an offer with
parameters it cannot honour is declined (the connection then goes on uncompressed), never answered with an error.
Compressing and decompressing frames is the work of :class:`websockets.extensions.permessage_deflate.PerMessageDeflate`;
its decompression honours the message size limit, so a small message that inflates past ``max_message_size``
closes the connection with 1009 instead of exhausting memory.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.headers import build_extension
from websockets.typing import ExtensionName, ExtensionParameter

__all__ = ["Offer", "negotiate"]

Offer = tuple[ExtensionName, Sequence[ExtensionParameter]]
_NAME = ExtensionName("permessage-deflate")


def negotiate(
    offers: tuple[Offer, ...],
    *,
    window_bits: int = 12,
    level: int = 6,
    memory_level: int = 5,
    no_context_takeover: bool = False,
) -> tuple[str, PerMessageDeflate] | None:
    """The ``Sec-WebSocket-Extensions`` response value and the extension, or None when no offer can be accepted.

    ``window_bits`` bounds both directions' LZ77 window; ``level`` and ``memory_level`` are zlib's; with
    ``no_context_takeover`` the server resets its compression context after every message.
    """
    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=no_context_takeover,
        server_max_window_bits=window_bits,
        client_max_window_bits=window_bits,
        compress_settings={"level": level, "memLevel": memory_level},
    )
    for name, params in offers:
        if name != _NAME or ("server_max_window_bits", "8") in params:
            # zlib cannot compress raw deflate with a 256-byte window (madler/zlib#171): websockets 17 declines such an
            # offer itself, websockets 16 (the last for Python 3.10) would accept it and fail in zlib.compressobj.
            continue
        try:
            response_params, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue  # decline this offer; a later one may fit
        return build_extension([(name, response_params)]), extension
    return None
