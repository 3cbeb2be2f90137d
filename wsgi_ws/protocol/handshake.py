"""The opening handshake (RFC 6455 §4.2), I/O free: validate an upgrade request, build the 101 response.

A request is a WebSocket request when its ``Upgrade`` header names ``websocket``. Such a request is then
checked in this order, and the first failure decides the HTTP answer:

=======================================================  ==========================================
check                                                    refusal
=======================================================  ==========================================
method is GET, version HTTP/1.1 or later, Host present   400
``Connection`` names ``upgrade``                         400
``Sec-WebSocket-Version`` is 13                          426 with ``Sec-WebSocket-Version: 13``
``Sec-WebSocket-Key`` is base64 of 16 bytes              400
``Origin`` passes the origin policy                      403
``Sec-WebSocket-Extensions``, if any, is well formed     400
=======================================================  ==========================================
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidHeader
from websockets.headers import parse_extension
from websockets.typing import ExtensionName, ExtensionParameter
from websockets.utils import accept_key

from .errors import HandshakeRefused, UsageError
from .origins import OriginPolicy, OwnOrigins, no_own_origins

__all__ = ["HandshakeRequest", "accept_response", "header_tokens", "is_upgrade_request", "validate_request"]

SUPPORTED_VERSION = "13"


@dataclass(frozen=True)
class HandshakeRequest:
    """What a valid upgrade request asked for."""

    key: str
    origin: str | None
    subprotocols: tuple[str, ...]
    #: The client's extension offers, in its order: (name, [(parameter, value or None), ...]).
    extensions: tuple[tuple[ExtensionName, Sequence[ExtensionParameter]], ...] = ()

    def select_subprotocol(self, preferred: tuple[str, ...]) -> str | None:
        """The first of the server's ``preferred`` subprotocols that the client offered, or None."""
        for name in preferred:
            if name in self.subprotocols:
                return name
        return None


def header_tokens(value: str | None) -> list[str]:
    """Split a comma-separated header value into lower-cased tokens."""
    if not value:
        return []
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def is_upgrade_request(environ: Mapping[str, Any]) -> bool:
    """True if the request asks to upgrade to WebSocket (``Upgrade: websocket``)."""
    return _has_token(environ.get("HTTP_UPGRADE"), "websocket")


def _has_token(value: str | None, token: str) -> bool:
    """``token in header_tokens(value)`` (``token`` lower case), without splitting the usual one-token values."""
    if not value:
        return False
    lowered = value.lower()
    if lowered == token:
        return True
    return token in lowered and token in header_tokens(value)


def validate_request(environ: Mapping[str, Any], origins: OriginPolicy, own: OwnOrigins = no_own_origins) -> HandshakeRequest:
    """Check an upgrade request; return what it asked for or raise :class:`HandshakeRefused`.

    ``own()`` gives the request's own origins for a ``same-origin`` policy (the server integration knows them).
    """
    if environ.get("REQUEST_METHOD") != "GET":
        raise HandshakeRefused(400, "a WebSocket upgrade must be a GET request (RFC 6455 §4.1)")
    protocol = str(environ.get("SERVER_PROTOCOL", ""))
    if protocol != "HTTP/1.1" and (not protocol.startswith("HTTP/") or _version_tuple(protocol[5:]) < (1, 1)):
        raise HandshakeRefused(400, "a WebSocket upgrade needs HTTP/1.1 or later (RFC 6455 §4.1)")
    if not environ.get("HTTP_HOST"):
        raise HandshakeRefused(400, "missing Host header (RFC 6455 §4.1)")
    if not _has_token(environ.get("HTTP_CONNECTION"), "upgrade"):
        raise HandshakeRefused(400, "missing 'Connection: Upgrade' header (RFC 6455 §4.1)")
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
    if version is None or version.strip() != SUPPORTED_VERSION:
        reason = "missing Sec-WebSocket-Version header" if version is None else f"unsupported Sec-WebSocket-Version {version.strip()!r}"
        raise HandshakeRefused(
            426, f"{reason}; this server speaks version 13 (RFC 6455 §4.4)", (("Sec-WebSocket-Version", SUPPORTED_VERSION),)
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY")
    if key is None:
        raise HandshakeRefused(400, "missing Sec-WebSocket-Key header (RFC 6455 §4.1)")
    key = key.strip()
    if not _is_valid_key(key):
        raise HandshakeRefused(400, "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)")
    origin = environ.get("HTTP_ORIGIN")
    refusal = origins.refusal(origin, own)
    if refusal is not None:
        raise HandshakeRefused(403, refusal)
    offered_header = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")
    offered = tuple(token.strip() for token in str(offered_header).split(",") if token.strip()) if offered_header else ()
    extensions_header = environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")
    try:
        extensions = tuple(parse_extension(extensions_header)) if extensions_header else ()
    except InvalidHeader as exc:
        raise HandshakeRefused(400, f"malformed Sec-WebSocket-Extensions header: {exc}") from None
    return HandshakeRequest(key=key, origin=origin, subprotocols=offered, extensions=extensions)


def accept_response(key: str, subprotocol: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The bytes of the ``101 Switching Protocols`` response that accepts the connection."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    for name, value in headers:
        if any(c in name + value for c in "\r\n"):
            raise UsageError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _is_valid_key(key: str) -> bool:
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return len(raw) == 16


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)
