"""Light stand-ins for the request-head objects of gevent's pywsgi, used by the gunicorn worker.

pywsgi parses every request's header lines with the standard library's ``email`` parser (through
``http.client.parse_headers``), a fifth of the server's time per WebSocket handshake. :func:`read_headers` reads the
same lines into a :class:`RequestHeaders`, which has exactly the part of ``http.client.HTTPMessage`` that pywsgi and
gunicorn use, with the same limits (65,536 bytes a line, 100 lines). After an upgrade, :class:`HeadersFromEnviron`
and :data:`NO_HTTP_INPUT` replace the parsed headers and the reader, which the connection no longer needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

__all__ = ["NO_HTTP_INPUT", "HeadersFromEnviron", "NoHTTPInput", "RequestHeaders", "environ_headers", "read_headers"]

#: ``http.client``'s limits: bytes in one header line, and header lines in one request.
MAX_LINE = 65536
MAX_HEADERS = 100
_END = (b"\r\n", b"\n", b"")
_NOT_IN_ENVIRON = ("CONTENT_TYPE", "CONTENT_LENGTH")  # pywsgi sets these two from the headers itself


class RequestHeaders:
    """A request's header fields in arrival order; ``status`` is non-empty when the head was malformed (answer 400)."""

    __slots__ = ("_headers", "status")

    def __init__(self, fields: list[tuple[str, str]] | None = None, status: str = "") -> None:
        self._headers = fields if fields is not None else []
        self.status = status

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of the field ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in self._headers:
            if key.lower() == name:
                return value
        return default

    getheader = get

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self._headers = [(key, value) for key, value in self._headers if key.lower() != name]

    def items(self) -> list[tuple[str, str]]:
        """Every field as ``(name, value)`` (gunicorn's access log reads them)."""
        return list(self._headers)

    @property
    def headers(self) -> Iterator[str]:
        """The fields as ``"Name: value\\r\\n"`` lines (``http.client.HTTPMessage``'s old interface)."""
        for key, value in self._headers:
            yield f"{key}: {value}\r\n"

    @property
    def typeheader(self) -> str | None:
        """The ``Content-Type`` value."""
        return self.get("content-type")


def read_headers(rfile: BinaryIO, *args: object) -> RequestHeaders:
    """Read the header lines after the request line, up to the empty line (pywsgi's ``MessageClass``)."""
    fields: list[tuple[str, str]] = []
    readline = rfile.readline
    while True:
        line = readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            return RequestHeaders(status="Line too long")
        if line in _END:
            return RequestHeaders(fields)
        if len(fields) >= MAX_HEADERS:
            return RequestHeaders(status=f"more than {MAX_HEADERS} headers")
        text = line.decode("latin-1").rstrip("\r\n")
        if text[0] in " \t":  # obs-fold (RFC 9112 §5.2): the previous field goes on, joined with a space
            if not fields:
                return RequestHeaders(status="a continuation line before any header")
            name, value = fields[-1]
            fields[-1] = (name, value + " " + text.strip(" \t"))
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip(" \t") or " " in name:
            return RequestHeaders(status=f"invalid header line {text[:64]!r}")
        fields.append((name, value.lstrip(" \t")))


def environ_headers(headers: RequestHeaders) -> Iterator[tuple[str, str]]:
    """The ``HTTP_*`` environ entries of ``headers``, as pywsgi makes them (names with ``_`` are dropped)."""
    for name, value in headers._headers:
        if "_" in name:
            continue
        key = name.replace("-", "_").upper()
        if key not in _NOT_IN_ENVIRON:
            yield "HTTP_" + key, value.strip()


class NoHTTPInput:
    """Stands in for pywsgi's reader and request body after an upgrade: closed, empty, nothing to discard."""

    closed = True

    def read(self, size: int = -1) -> bytes:
        """No body: a WebSocket upgrade is a GET."""
        return b""

    readline = read

    def _discard(self) -> None:
        """Nothing is left to skip."""


NO_HTTP_INPUT = NoHTTPInput()


class HeadersFromEnviron:
    """Stands in for pywsgi's parsed request headers after an upgrade: read back from the environ's ``HTTP_*`` keys.

    The parsed headers cost memory for as long as the WebSocket stays open; after the upgrade only pywsgi's
    ``start_response`` checks and gunicorn's access log look at the headers.
    """

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        """One header's value, by case-insensitive name."""
        value: str | None = self._environ.get("HTTP_" + name.upper().replace("-", "_"), default)
        return value

    def items(self) -> list[tuple[str, str]]:
        """Every request header as ``(Name, value)`` (for the access log's ``%({header}i)s`` atoms)."""
        return [(key[5:].replace("_", "-").title(), value) for key, value in self._environ.items() if key.startswith("HTTP_")]
