"""The origin policy: which browser origins may open a WebSocket (RFC 6454 origins, RFC 6455 §10.2).

Origins are compared normalized: scheme and host lower-cased, the default port (80 for http/ws, 443 for
https/wss) dropped, so ``HTTPS://A.COM:443`` equals ``https://a.com``. A pattern is ``*`` (every origin),
``null`` (the opaque origin of sandboxed or file pages), an exact origin, or ``scheme://*.domain[:port]``,
which matches subdomains of ``domain`` only, never ``domain`` itself nor ``domain.evil.net``.
"""

from __future__ import annotations

import re

__all__ = ["OriginPolicy", "check_pattern", "normalize_origin"]

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
    if pattern in ("*", "null"):
        return None
    candidate = pattern.replace("://*.", "://wildcard.", 1) if "://*." in pattern else pattern
    if "*" in candidate or normalize_origin(candidate) is None:
        return f"{pattern!r} is not an origin (scheme://host[:port]), '*', 'null' or 'scheme://*.domain'"
    return None


class OriginPolicy:
    """Decides whether a request's ``Origin`` header is allowed."""

    def __init__(self, allowed: tuple[str, ...], require_origin: bool = False) -> None:
        self.allow_all = "*" in allowed
        self.require_origin = require_origin
        self._exact: set[str] = set()
        self._suffixes: list[tuple[str, str, str]] = []  # (scheme, ".domain", ":port" or "")
        for pattern in allowed:
            if pattern in ("*",):
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

    def refusal(self, origin: str | None) -> str | None:
        """Why a request with this ``Origin`` (None when absent) is refused (answered with 403), or None if allowed."""
        if self.allows(origin):
            return None
        return "an Origin header is required" if origin is None else f"origin {origin!r} is not allowed"

    def allows(self, origin: str | None) -> bool:
        """True if a request with this ``Origin`` header value (None when absent) may connect."""
        if origin is None:
            return not self.require_origin
        if self.allow_all:
            return True
        normal = normalize_origin(origin)
        if normal is None:
            return False
        if normal in self._exact:
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
