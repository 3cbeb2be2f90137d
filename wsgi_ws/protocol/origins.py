"""The origin policy: which browser origins may open a WebSocket (RFC 6454 origins, RFC 6455 §10.2).

``same-origin`` (the default) allows the request's own origin: the scheme, host and port the browser used to reach
this server, which the server integration works out (behind a trusted proxy, from its ``X-Forwarded-*`` headers).

Origins are compared normalized: scheme and host lower-cased, the default port (80 for http/ws, 443 for
https/wss) dropped, so ``HTTPS://A.COM:443`` equals ``https://a.com``. A pattern is ``same-origin``, ``*`` (every origin),
``null`` (the opaque origin of sandboxed or file pages), an exact origin, or ``scheme://*.domain[:port]``,
which matches subdomains of ``domain`` only, never ``domain`` itself nor ``domain.evil.net``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["ALLOW_ALL", "SAME_ORIGIN", "OriginPolicy", "OwnOrigins", "check_pattern", "no_own_origins", "normalize_origin"]

#: The ``allowed_origins`` entry that allows the request's own origin (the default).
SAME_ORIGIN = "same-origin"
#: The ``allowed_origins`` entry that allows every origin (logged as a warning at start-up).
ALLOW_ALL = "*"

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_ORIGIN = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/:?#\s]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?/?$")


def normalize_origin(origin: str) -> str | None:
    """Return ``scheme://host[:port]`` in canonical form, ``"null"`` for the opaque origin, or None if malformed."""
    text = origin.strip()
    if text.lower() == "null":
        return "null"
    match = _ORIGIN.match(text)
    if not match:
        return None
    scheme = match["scheme"].lower()
    host = match["host"].lower().rstrip(".")
    if not host:
        return None
    port = match["port"]
    if port is not None:
        number = int(port)
        if not 0 < number < 65536:
            return None
        port = None if _DEFAULT_PORTS.get(scheme) == number else str(number)
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def check_pattern(pattern: str) -> str | None:
    """Return what is wrong with an ``allowed_origins`` entry, or None if it is valid."""
    if pattern in (ALLOW_ALL, SAME_ORIGIN, "null"):
        return None
    candidate = pattern.replace("://*.", "://wildcard.", 1) if "://*." in pattern else pattern
    if "*" in candidate or normalize_origin(candidate) is None:
        return f"{pattern!r} is not an origin (scheme://host[:port]), 'same-origin', '*', 'null' or 'scheme://*.domain'"
    return None


#: Gives the request's own origins, normalized (the one it reached this server with, and a proxy's view of it).
OwnOrigins = Callable[[], Iterable[str]]


def no_own_origins() -> Iterable[str]:
    """No own origin is known: ``same-origin`` then allows nothing but requests without ``Origin``."""
    return ()


class OriginPolicy:
    """Decides whether a request's ``Origin`` header is allowed."""

    def __init__(self, allowed: tuple[str, ...], require_origin: bool = False) -> None:
        self.allow_all = ALLOW_ALL in allowed
        #: True when the request's own origin is allowed (``same-origin``): the caller must say what it is.
        self.same_origin = SAME_ORIGIN in allowed and not self.allow_all
        self.require_origin = require_origin
        self._exact: set[str] = set()
        self._suffixes: list[tuple[str, str, str]] = []  # (scheme, ".domain", ":port" or "")
        for pattern in allowed:
            if pattern in (ALLOW_ALL, SAME_ORIGIN):
                continue
            if "://*." in pattern:
                scheme, rest = pattern.split("://*.", 1)
                normal = normalize_origin(f"{scheme}://{rest}")
                assert normal is not None, pattern  # validated by the options
                scheme, hostport = normal.split("://", 1)
                host, _, port = hostport.partition(":")
                self._suffixes.append((scheme, "." + host, f":{port}" if port else ""))
            else:
                normal = normalize_origin(pattern)
                assert normal is not None, pattern
                self._exact.add(normal)

    def refusal(self, origin: str | None, own: OwnOrigins = no_own_origins) -> str | None:
        """Why a request with this ``Origin`` (None when absent) is refused (answered with 403), or None if allowed.

        ``own()`` gives the request's own origins (normalized), asked only when ``same-origin`` must decide.
        """
        if self.allows(origin, own):
            return None
        if origin is None:
            return "an Origin header is required"
        if self.same_origin and not self._exact and not self._suffixes:
            return f"origin {origin!r} is not this server's ({', '.join(own()) or 'unknown'}); see allowed_origins"
        return f"origin {origin!r} is not allowed"

    def allows(self, origin: str | None, own: OwnOrigins = no_own_origins) -> bool:
        """True if a request with this ``Origin`` header value (None when absent) may connect (``own``: see :meth:`refusal`)."""
        if origin is None:
            return not self.require_origin
        if self.allow_all:
            return True
        normal = normalize_origin(origin)
        if normal is None:
            return False
        if normal in self._exact or (self.same_origin and normal in own()):
            return True
        if normal == "null":
            return False
        scheme, hostport = normal.split("://", 1)
        host, colon, port = hostport.partition(":")
        port_part = f":{port}" if colon else ""
        for pattern_scheme, suffix, pattern_port in self._suffixes:
            if scheme == pattern_scheme and port_part == pattern_port and host.endswith(suffix) and len(host) > len(suffix):
                return True
        return False
