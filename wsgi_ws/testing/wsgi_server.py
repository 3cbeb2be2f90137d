"""One HTTP request over one socket, served in the calling thread the way a threaded WSGI server serves it.

The server side of :class:`~wsgi_ws.testing.client.TestClient`: :func:`serve_request` reads a request head from its
end of a socket pair, makes the WSGI environ that Werkzeug's threaded server (``flask run``) would make, with the
connection's socket at ``environ["werkzeug.socket"]``, and calls the app. An app that took the connection over (a
WebSocket served by :class:`~wsgi_ws.middleware.WebSocketMiddleware`, which ``WebSockets(app)`` installs) owns the
socket until it returns; any other answer is written back as HTTP/1.1 with ``Connection: close``, as a server would.
Nothing here knows WebSockets beyond that: the handshake checks, the origin policy, the options and the framing
are the library's own code, as under ``flask run``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from ..connection.websocket import WebSocket
from ..integrations.handler import HANDLER_ERROR
from ..integrations.wsgi import ENVIRON_KEY

__all__ = ["MAX_HEAD", "BaseURL", "Served", "serve_request"]

#: The longest request head read (gunicorn's default limits are of this order); a longer one gets 400.
MAX_HEAD = 65536

WSGIApp = Callable[..., Iterable[bytes]]

_ports = itertools.count(40000)  # REMOTE_PORT of each connection, so that log lines tell connections apart


@dataclass(frozen=True)
class BaseURL:
    """Where the app believes it is served: scheme (``http`` or ``https``), host and port, from a URL."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> BaseURL:
        """``http://localhost`` (the default), ``https://app.example.com:8443``, or the ``ws``/``wss`` forms of them."""
        parts = urlsplit(url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s):// or ws(s):// URL with a host, not {url!r}")
        return cls(scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))

    @property
    def netloc(self) -> str:
        """``host`` or ``host:port`` (the default port left out), as a client's ``Host`` header says it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The ``ws://`` URL of the same host (the test client never speaks TLS: the environ says ``https``)."""
        return f"ws://{self.netloc}"


@dataclass
class Served:
    """What happened to one request: its environ, the HTTP status written (None: the app took the connection over),
    and the exception the app or its WebSocket handler raised, if any."""

    environ: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    error: BaseException | None = None


def serve_request(
    app: WSGIApp,
    sock: socket.socket,
    base: BaseURL,
    *,
    remote_addr: str = "127.0.0.1",
    extra_environ: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> Served:
    """Read one request from ``sock``, run ``app`` on it, answer it unless the app took the connection over.

    Never raises: an exception of the app is answered 500 (when nothing was sent yet) and kept in the result, like a
    WebSocket handler's error after accept (which the library closed with 1011). The caller closes ``sock``.
    """
    served = Served()
    try:
        head, body = _read_request(sock, timeout)
        served.environ = environ = make_environ(head, body, sock, base, remote_addr, extra_environ)
    except OSError:  # the client went away or sent nothing in time: nobody to answer
        return served
    except ValueError as error:  # not HTTP, or a head over MAX_HEAD
        _write(sock, "400 Bad Request", [("Content-Type", "text/plain; charset=utf-8")], f"400 Bad Request: {error}\n".encode())
        return served
    sock.settimeout(None)
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [status, headers]  # nothing is sent before the app returns, so a later call (exc_info) replaces it
        return chunks.append

    result: Iterable[bytes] | None = None
    try:
        result = app(environ, start_response)
        if not _taken_over(environ):
            chunks.extend(result)
            if not started:
                raise RuntimeError("the WSGI app returned without calling start_response")
    except Exception as error:
        served.error = error
        if not _taken_over(environ):
            text = "".join(traceback.format_exception_only(error)).encode()
            started[:] = ["500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")]]
            chunks[:] = [b"500 Internal Server Error: the app raised " + text]
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # Werkzeug's done-marker generator, or the app's own iterable
                close()
    handler_error = environ.get(HANDLER_ERROR)
    if served.error is None and isinstance(handler_error, BaseException):
        served.error = handler_error
    if not _taken_over(environ) and started:
        served.status = started[0]
        _write(sock, started[0], started[1], b"".join(chunks))
    return served


def _taken_over(environ: Mapping[str, Any]) -> bool:
    """Whether the app accepted a WebSocket on this request (then the socket was its own, and nothing is written)."""
    ws = environ.get(ENVIRON_KEY)
    return isinstance(ws, WebSocket) and ws.accepted


def _read_request(sock: socket.socket, timeout: float) -> tuple[bytes, bytes]:
    """The request head (without its blank line) and body (``Content-Length`` bytes), reading no byte past them.

    Bytes are peeked before they are taken, so what follows the head (a client's first frames) stays in the socket
    for the WebSocket to read."""
    deadline = time.monotonic() + timeout
    taken = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        peeked = sock.recv(MAX_HEAD, socket.MSG_PEEK)
        if not peeked:
            raise ConnectionError("the client closed before sending a request head")
        seen = taken + peeked
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            taken += _recv_exactly(sock, end + 4 - len(taken))
            break
        if len(seen) > MAX_HEAD:
            raise ValueError(f"request head too long (over {MAX_HEAD} bytes)")
        taken += _recv_exactly(sock, len(peeked))  # then the next peek blocks until more arrives
    head = taken[:-4]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
    return head, _recv_exactly(sock, length) if length else b""


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size > 0:
        part = sock.recv(size)
        if not part:
            raise ConnectionError("the client closed in the middle of its request")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def make_environ(
    head: bytes,
    body: bytes,
    sock: socket.socket,
    base: BaseURL,
    remote_addr: str = "127.0.0.1",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of a request head, as Werkzeug's server makes it, with ``werkzeug.socket``.

    Repeated headers are joined with commas; header names with an underscore are dropped (as gunicorn and
    Werkzeug do, so that ``X_Forwarded_For`` cannot pose as ``X-Forwarded-For``). ``ValueError`` for a bad head."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ")
    if not version.startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {request_line!r}")
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": target,
        "RAW_URI": target,
        "SERVER_NAME": base.host,
        "SERVER_PORT": str(base.port),
        "SERVER_PROTOCOL": version,
        "SERVER_SOFTWARE": "wsgi_ws.testing",
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": str(next(_ports)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": base.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "werkzeug.socket": sock,
    }
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"not a header line: {line!r}")
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
        value = value.strip(" \t")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ.update(extra or {})
    return environ


def _write(sock: socket.socket, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
    """Write an HTTP/1.1 response and end it with the connection (the client reads to the end)."""
    names = {name.lower() for name, _ in headers}
    extra = [] if "content-length" in names else [("Content-Length", str(len(body)))]
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in [*headers, *extra, ("Connection", "close")])]
    with contextlib.suppress(OSError):  # the client went away: nobody to answer
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        sock.shutdown(socket.SHUT_WR)
