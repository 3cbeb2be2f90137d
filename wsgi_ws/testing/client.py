"""The fast test client: your app's WebSocket handlers in this process, no server, each test in milliseconds.

::

    from wsgi_ws.testing import TestClient
    from myapp import app

    def test_echo():
        with TestClient(app) as client, client.connect("/ws") as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"

Each :meth:`TestClient.connect` makes a loopback TCP connection (:func:`connected_pair`): the ``websockets``
package's blocking client on one end, the app on the other in a thread of its own, called with the environ a
threaded server makes (Werkzeug's, as under ``flask run``), so the request goes through the library's real code:
``WebSocketMiddleware`` (which ``WebSockets(app)`` installs), the handshake checks, the origin policy, the options
of ``configure()``, the Flask config and the route, the framing, the close handshake, the ``ws.accept`` /
``ws.close`` log lines. No gunicorn, no gevent. The client is the one ``serve().connect()`` gives, so a test moves
between the two by changing one line.
"""

from __future__ import annotations

import http.client
import inspect
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .wsgi_server import BaseURL, Served, serve_request

__all__ = ["HTTPResponse", "TestClient", "TestConnection", "connected_pair"]

WSGIApp = Callable[..., Iterable[bytes]]

#: The keywords ``websockets.sync.client.connect`` names; any other would go to ``socket.create_connection``, which
#: the test client never calls (it hands over its own socket), so it is refused instead of silently ignored.
_CONNECT_KEYWORDS = frozenset(name for name, p in inspect.signature(connect).parameters.items() if p.kind is p.KEYWORD_ONLY)


class TestConnection(ClientConnection):
    """The ``websockets`` package's blocking client connection, as ``serve().connect()`` returns it.

    :meth:`close` (so the end of a ``with`` block too) also waits for the handler to return, at most the test
    client's ``timeout``: the ``ws.close`` log line, the handler's own last steps and its exception are all there
    once it returns. A handler that raised is re-raised there (unless the client was made with
    ``raise_server_exceptions=False``); the close code the client saw is still what production sends, 1011.
    """

    __test__ = False  # not a pytest test class
    _finish: Callable[[], None] | None = None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (``code``, ``reason``), wait for the handler's end, re-raise its exception; a no-op the second time."""
        super().close(code, reason)
        keepalive = getattr(self, "keepalive_thread", None)
        if keepalive is not None:
            keepalive.join()  # it ends with the connection: no thread is left behind
        finish, self._finish = self._finish, None
        if finish is not None:
            finish()


class HTTPResponse:
    """An answer to :meth:`TestClient.request`: ``status`` (int), ``reason``, ``headers`` (case-insensitive), ``body``."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        #: The status code.
        self.status: int = response.status
        #: The reason phrase.
        self.reason: str = response.reason
        #: The response headers (``headers["Content-Type"]``, any case).
        self.headers = response.headers
        #: The whole body.
        self.body: bytes = response.read()

    @property
    def text(self) -> str:
        """The body as UTF-8."""
        return self.body.decode()


def connected_pair() -> tuple[socket.socket, socket.socket]:
    """The two ends of one TCP connection on 127.0.0.1: the client's, the app's. (Not ``socket.socketpair()``: the
    ``websockets`` client before version 17, the one for Python 3.10, sets ``TCP_NODELAY``, which a Unix socket
    refuses.)"""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        own = socket.create_connection(listener.getsockname()[:2])
        theirs, _ = listener.accept()
    return own, theirs


class TestClient:
    """Runs ``app`` (any WSGI app: a Flask app with ``WebSockets(app)``, or one wrapped in ``WebSocketMiddleware``)
    for WebSocket clients in this process.

    - ``base_url``: where the app believes it is served (``Host``, ``SERVER_NAME``, ``wsgi.url_scheme``); the
      same-origin policy allows ``origin=`` this URL (``http://localhost`` by default; ``https://...`` makes the
      environ's scheme https, though nothing is encrypted).
    - ``remote_addr``: the client's IP (``REMOTE_ADDR``), for per-IP limits and the log lines.
    - ``environ``: extra WSGI environ keys of every request (``{"REMOTE_USER": "ann"}``).
    - ``raise_server_exceptions``: an exception of the app (before accept, when Flask propagates it: ``TESTING``)
      is raised by :meth:`connect`; one of a handler after accept by :meth:`TestConnection.close`. False: the
      client sees only what a real client would (the 500, the close code 1011).
    - ``timeout``: seconds the client waits for the handshake, for the server's close frame, and for a handler to
      return after the close; a handler still running then is a ``TimeoutError``, never a hang.

    Use it in a ``with`` block (or call :meth:`close`): connections left open are closed at its end.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: WSGIApp,
        *,
        base_url: str = "http://localhost",
        remote_addr: str = "127.0.0.1",
        environ: Mapping[str, Any] | None = None,
        raise_server_exceptions: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.app = app
        #: Where the app believes it is served.
        self.base = BaseURL.parse(base_url)
        self.remote_addr = remote_addr
        self.environ = dict(environ or {})
        self.raise_server_exceptions = raise_server_exceptions
        self.timeout = timeout
        self._open: set[TestConnection] = set()
        #: What happened to each request so far, in order: its environ, its HTTP status or None, its error.
        self.served: list[Served] = []

    @property
    def url(self) -> str:
        """The ``ws://`` base URL the client connects to (its host is ``base_url``'s)."""
        return self.base.ws_url

    @property
    def origin(self) -> str:
        """The app's own origin (``http://localhost``): what the same-origin policy allows as ``origin=``."""
        return f"{self.base.scheme}://{self.base.netloc}"

    def connect(self, path: str = "/", **kwargs: Any) -> TestConnection:
        """Open a WebSocket to ``path`` (with its query string); the keywords are ``websockets.sync.client.connect``'s
        (``origin=``, ``subprotocols=``, ``additional_headers=``, ``compression=``, ``max_size=``, ...), as for
        ``serve().connect()``; any other keyword (which websockets would hand to ``socket.create_connection``, never
        called here: ``headers=``, ``address=``) is a ``TypeError``. Use the answer in a ``with`` block.

        A refused upgrade (403, 400, 426, 429, the app's own 401 or 404 before accept) raises the ``websockets``
        package's ``InvalidStatus``, whose ``response`` has the status, headers and body, after the app returned.
        """
        unknown = sorted(set(kwargs) - _CONNECT_KEYWORDS - {"sock"})
        if unknown or "sock" in kwargs:
            hint = " (headers go in additional_headers=)" if "headers" in unknown else ""
            raise TypeError(f"connect() got keywords websockets' connect() does not take here: {', '.join(unknown) or 'sock'}{hint}")
        kwargs.setdefault("open_timeout", self.timeout)
        kwargs.setdefault("close_timeout", self.timeout)
        kwargs.setdefault("create_connection", TestConnection)
        own, theirs = connected_pair()
        finish = self._start(theirs, path)
        try:
            ws: TestConnection = connect(self.url + path, sock=own, **kwargs)
        except BaseException:
            own.close()
            finish()  # the app's exception, if any, is the one to see; else the client's
            raise

        def end() -> None:
            self._open.discard(ws)
            finish()

        ws._finish = end
        self._open.add(ws)
        return ws

    def request(self, path: str = "/", method: str = "GET", headers: Mapping[str, str] | None = None, body: bytes = b"") -> HTTPResponse:
        """Send one plain HTTP request through the same server side (for a route's answer to a request that is not a
        WebSocket handshake, or a hand-made handshake: ``headers={"Upgrade": "websocket", ...}``)."""
        own, theirs = connected_pair()
        finish = self._start(theirs, path)
        try:
            own.settimeout(self.timeout)
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.base.netloc}"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            if body:
                lines.append(f"Content-Length: {len(body)}")
            own.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            response = http.client.HTTPResponse(own, method=method)
            response.begin()
            answer = HTTPResponse(response)
        finally:
            own.close()
            finish()
        return answer

    def _start(self, sock: socket.socket, path: str) -> Callable[[], None]:
        """Serve one request on ``sock`` in a thread; the function that waits for it and raises what it raised."""
        box: list[Served] = []

        def run() -> None:
            try:
                box.append(
                    serve_request(self.app, sock, self.base, remote_addr=self.remote_addr, extra_environ=self.environ, timeout=self.timeout)
                )
            finally:
                sock.close()

        thread = threading.Thread(target=run, name=f"wsgi_ws.testing {path}", daemon=True)
        thread.start()

        def finish() -> None:
            thread.join(self.timeout)
            if thread.is_alive():
                raise TimeoutError(
                    f"the app was still serving {path} {self.timeout} s after the client's end (a handler that never returns?)"
                )
            served = box[0] if box else Served()
            self.served.append(served)
            if served.error is not None and self.raise_server_exceptions:
                raise served.error

        return finish

    def close(self) -> None:
        """Close every connection still open (each waits for its handler); the first server exception is raised."""
        first: BaseException | None = None
        for ws in list(self._open):
            try:
                ws.close()
            except Exception as error:
                first = first or error
        if first is not None:
            raise first

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
