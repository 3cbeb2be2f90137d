"""The gunicorn worker: gunicorn's gevent pywsgi worker whose request handler speaks WebSocket.

Use it with ``worker_class = "wsgi_ws.worker.WebSocketWorker"`` (the project's ``gunicorn.conf.py`` does).
One greenlet serves each connection; a WebSocket handler runs in it and blocks only that greenlet.

Beyond gunicorn's gevent worker it adds: a deadline for the request head (``handshake_timeout``), an HTTP 503 for
connections beyond ``worker_connections`` (instead of leaving them waiting unanswered), keep-alive for every open
WebSocket, and close 1001 for every open WebSocket when the worker stops or reloads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from io import BufferedReader
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from ..connection.keepalive import ConnectionMonitor
from ..connection.websocket import WebSocket
from ..options import WebSocketOptions, current_options
from ..protocol.session import CloseCode
from .handler import opened, run_app
from .wsgi import HTTPErrorApp, prepare, refuse

__all__ = ["WebSocketHandler", "WebSocketServer", "WebSocketWorker", "WorkerState"]

log = logging.getLogger("wsgi_ws")

#: Connections accepted beyond ``worker_connections`` only to be answered 503.
OVERFLOW = 64


class HeadTimeout(TimeoutError):
    """The client did not send a complete request head within ``handshake_timeout``."""


class _NoHTTPInput:
    """Stands in for pywsgi's reader and request body after an upgrade: closed, empty, nothing to discard."""

    closed = True

    def read(self, size: int = -1) -> bytes:
        """No body: a WebSocket upgrade is a GET."""
        return b""

    readline = read

    def _discard(self) -> None:
        """Nothing is left to skip."""


_NO_HTTP_INPUT = _NoHTTPInput()


class _HeadersFromEnviron:
    """Stands in for pywsgi's parsed request headers after an upgrade: read back from the environ's ``HTTP_*`` keys.

    The parsed ``email.message`` object costs about 1.5 KB per connection for as long as the WebSocket stays open;
    after the upgrade only pywsgi's ``start_response`` checks and gunicorn's access log look at the headers.
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


class WorkerState:
    """What the connections of one worker share: its options, its keep-alive monitor, its connection count."""

    def __init__(self, limit: int | None = None) -> None:
        #: Connections being served now (HTTP and WebSocket).
        self.active = 0
        #: ``worker_connections``: beyond it, requests are answered 503.
        self.limit = limit
        self.monitor = ConnectionMonitor(gevent.spawn, gevent.sleep)

    @property
    def options(self) -> WebSocketOptions:
        """The process's options (``wsgi_ws.configure``, the Flask config, ``WS_*``): the per-server ones act here."""
        return current_options()


def take_buffered(rfile: BufferedReader, sock: Any) -> bytes:
    """Bytes the HTTP parser already read past the request head (a client may pipeline its first frames)."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        data = rfile.peek(1)
    except OSError:
        data = b""
    finally:
        sock.settimeout(timeout)
    return rfile.read(len(data)) if data else b""


class WebSocketHandler(PyWSGIHandler):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's pywsgi request handler, extended to hand upgrade requests a deferred-accept WebSocket."""

    #: The worker this handler serves for (each worker binds a subclass of its own, see WebSocketWorker).
    worker_state = WorkerState()
    _head_timer: gevent.Timeout | None = None
    rfile: Any
    headers: Any
    wsgi_input: Any
    response_headers: Any
    result: Any

    def handle_one_request(self) -> Any:
        """Read and answer one request; the request head must arrive within ``handshake_timeout``."""
        self._head_timer = gevent.Timeout.start_new(self.worker_state.options.handshake_timeout, HeadTimeout)
        try:
            return super().handle_one_request()
        finally:
            self._head_timer.close()

    def get_environ(self) -> dict[str, Any]:
        """The request head is complete: stop its deadline, then build the environ."""
        if self._head_timer is not None:
            self._head_timer.close()
        environ: dict[str, Any] = super().get_environ()
        return environ

    def read_requestline(self) -> Any:
        """Read the request line; a head timeout ends the connection quietly."""
        try:
            return super().read_requestline()
        except HeadTimeout:
            log.debug(
                "closing connection from %s: no complete request within %.1f s",
                self.client_address,
                self.worker_state.options.handshake_timeout,
            )
            raise

    def _handle_client_error(self, ex: BaseException) -> Any:
        if isinstance(ex, HeadTimeout):
            log.debug(
                "closing connection from %s: request head incomplete after %.1f s",
                self.client_address,
                self.worker_state.options.handshake_timeout,
            )
            return None
        return super()._handle_client_error(ex)

    def run_application(self) -> None:
        """Run the app for one request; for a WebSocket request, own the connection until it closes."""
        environ = self.environ
        state = self.worker_state
        if state.limit is not None and state.active > state.limit:
            reason = f"server at capacity: worker_connections ({state.limit}) reached; retry later"
            self.application = refuse(environ, 503, reason, (("Retry-After", "1"),), logging.WARNING)
            self.close_connection = True
            super().run_application()
            return
        options = self.worker_state.options
        prepared = prepare(environ, options)
        if prepared is None:
            super().run_application()
            return
        if isinstance(prepared, HTTPErrorApp):  # a refused handshake (counted and logged): answer it as plain HTTP
            self.application = prepared
            self.close_connection = True
            super().run_application()
            return
        ws = WebSocket(
            self.socket,
            environ,
            prepared,
            options,
            buffered=take_buffered(self.rfile, self.socket),
            defer=gevent.spawn,
            on_accept=self._on_accept,
        )
        try:
            result = run_app(self.application, environ, self.start_response, ws, self.worker_state.monitor)
        except BaseException:
            if ws.accepted:
                self._after_websocket()
            raise  # before accept it is still plain HTTP: pywsgi logs it and answers 500
        if result is None:  # the connection was a WebSocket and has ended
            self._after_websocket()
            return
        self.result = result  # the app answered with HTTP (403, 404, ...): send exactly that
        try:
            self.process_result()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            self.result = None

    def _on_accept(self, ws: WebSocket) -> None:
        """Once upgraded the connection never reads HTTP again: drop pywsgi's 8 KiB reader and its parsed headers."""
        opened(self.worker_state.monitor, ws)
        self.headers = _HeadersFromEnviron(self.environ)
        self.rfile = _NO_HTTP_INPUT
        self.wsgi_input = _NO_HTTP_INPUT
        self.environ["wsgi.input"] = _NO_HTTP_INPUT

    def _after_websocket(self) -> None:
        self.close_connection = True
        self.status = b"101 Switching Protocols"
        self.code = 101
        if self.response_headers is None:  # the app never called start_response (gevent-websocket style)
            self.response_headers = []  # gunicorn's access log iterates them


def _serve_connection(
    state: WorkerState, handle: Callable[[Any, Any], object], close: Callable[[Any, Any], object], sock: Any, address: Any
) -> None:
    """Serve one connection, counted in ``state.active`` while it lasts (beyond ``state.limit``, requests get 503).

    The count is kept here rather than in the handler: a frame less under every idle WebSocket's handler.
    """
    state.active += 1
    try:
        handle(sock, address)
    finally:
        state.active -= 1
        close(sock, address)


class WebSocketServer(PyWSGIServer):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's pywsgi server, starting each connection's greenlet with one C stack frame less.

    gevent starts it with ``handle(*args)``, a call CPython 3.11 makes through a new C frame, which an idle
    WebSocket's greenlet then keeps in its saved stack (about 0.7 KB per connection); a plain call does not.
    """

    def do_handle(self, *args: Any) -> None:
        """Serve one accepted connection ``(socket, address)`` in a greenlet of the pool."""
        if self._spawn is None or len(args) != 2:
            super().do_handle(*args)
            return
        try:
            self._spawn(_serve_connection, self.handler_class.worker_state, self._handle, self.do_close, *args)
        except BaseException:
            self.do_close(*args)
            raise


class WebSocketWorker(GeventPyWSGIWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn worker class: gevent pywsgi with WebSocket support (``wsgi_ws.worker.WebSocketWorker``)."""

    server_class = WebSocketServer
    wsgi_handler = WebSocketHandler
    worker_connections: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # gunicorn stops accepting when its pool is full, leaving clients hanging; accept a few more and answer 503.
        limit = int(self.cfg.worker_connections)
        self.worker_connections = limit + OVERFLOW
        #: This worker's connections; its handler class is bound to it.
        self.state = state = WorkerState(limit)

        class BoundHandler(WebSocketHandler):
            worker_state = state

        self.wsgi_handler = BoundHandler

    def init_process(self) -> None:
        """Send the library's log lines to gunicorn's error log, then start as gunicorn's gevent worker does."""
        ours = logging.getLogger("wsgi_ws")
        error_log = self.log.error_log
        if not ours.handlers:
            for handler in error_log.handlers:
                ours.addHandler(handler)
            ours.setLevel(error_log.level)
            ours.propagate = False
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM (also how a reload retires old workers): stop accepting, close every WebSocket with 1001."""
        super().handle_exit(sig, frame)
        gevent.spawn(self._close_websockets)

    def _close_websockets(self) -> None:
        count = self.state.monitor.close_all(CloseCode.GOING_AWAY, "server shutting down")
        if count:
            log.info("worker %s shutting down: closing %d WebSocket connection(s) with 1001", self.pid, count)
