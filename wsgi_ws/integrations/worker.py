"""The gunicorn worker: gunicorn's gevent pywsgi worker whose request handler speaks WebSocket.

Use it with ``worker_class = "wsgi_ws.worker.WebSocketWorker"`` (the project's ``gunicorn.conf.py`` does).
One greenlet serves each connection; a WebSocket handler runs in it and blocks only that greenlet.

Beyond gunicorn's gevent worker it adds: a deadline for the request head (``handshake_timeout``), an HTTP 503 for
connections beyond ``worker_connections`` (instead of leaving them waiting unanswered), keep-alive for every open
WebSocket, and a prompt retirement on SIGTERM, SIGHUP (rolling restart) or ``--reload``: the worker stops accepting at
once (new connections go to the other workers or are refused), closes every WebSocket with 1001, answers upgrades it
had accepted but not yet served with 503, ends idle keep-alive connections, and exits as soon as its last connection
has ended (``graceful_timeout`` is only the limit).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from io import BufferedReader
from typing import Any

import gevent
import gevent.event
from gevent.pool import Pool
from gunicorn.http.wsgi import base_environ
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import VERSION, GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer

from ..connection.keepalive import ConnectionMonitor
from ..connection.websocket import WebSocket
from ..options import WebSocketOptions, current_options
from ..protocol.session import CloseCode
from .access_log import redact_upgrade
from .admission import admit
from .handler import opened, run_app
from .library_log import join_gunicorn_log
from .prometheus import ensure_exporting
from .proxies import ENVIRON_KEY as PROXIES_KEY
from .proxies import NO_PROXIES, TrustedProxies
from .pywsgi_head import NO_HTTP_INPUT, HeadersFromEnviron, environ_headers, read_headers
from .tls_failures import TLSFailures
from .wsgi import HTTPErrorApp, prepare, refuse, warn_if_every_origin

__all__ = ["WebSocketHandler", "WebSocketServer", "WebSocketWorker", "WorkerState"]

log = logging.getLogger("wsgi_ws")

#: Connections accepted beyond ``worker_connections`` only to be answered 503.
OVERFLOW = 64


class HeadTimeout(TimeoutError):
    """The client did not send a complete request head within ``handshake_timeout``."""


class WorkerState:
    """What the connections of one worker share: its options, its keep-alive monitor, its connection count."""

    def __init__(self, limit: int | None = None) -> None:
        #: Connections being served now (HTTP and WebSocket).
        self.active = 0
        #: ``worker_connections``: beyond it, requests are answered 503.
        self.limit = limit
        self.monitor = ConnectionMonitor(gevent.spawn, gevent.sleep)
        #: True once the worker is going away: upgrades get 503, idle keep-alive connections end.
        self.stopping = False
        #: The greenlets of keep-alive connections waiting for their next request (ended when the worker stops).
        self.idle: set[Any] = set()
        #: Failed TLS handshakes: counted, logged a line at a time (no traceback).
        self.tls_failures = TLSFailures()
        #: The proxies whose X-Forwarded-* headers are believed (gunicorn's forwarded_allow_ips).
        self.proxies = NO_PROXIES

    def end_idle(self) -> None:
        """End every keep-alive connection that is waiting for its next request (call it from the hub)."""
        for greenlet in list(self.idle):
            if greenlet in self.idle:  # still waiting: it has not started reading a request meanwhile
                greenlet.throw(HeadTimeout("worker stopping"))

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
    _served = False  # a request was answered on this connection: the next wait is an idle keep-alive
    _waiting: Any = None  # this greenlet, while it waits idle for the next request
    rfile: Any
    headers: Any
    #: pywsgi's parser of the header lines: the ``email`` package's, a fifth of a handshake's time; ours is plain.
    MessageClass = staticmethod(read_headers)
    wsgi_input: Any
    response_headers: Any
    result: Any

    def handle_one_request(self) -> Any:
        """Read and answer one request; the request head must arrive within ``handshake_timeout``."""
        state = self.worker_state
        if self._served:  # keep-alive: wait for the next request, unless the worker is going away
            if state.stopping:
                return None
            self._waiting = gevent.getcurrent()
            state.idle.add(self._waiting)
        self._head_timer = gevent.Timeout.start_new(state.options.handshake_timeout, HeadTimeout)
        try:
            return super().handle_one_request()
        finally:
            self._head_timer.close()
            self._served = True
            if self._waiting is not None:
                state.idle.discard(self._waiting)
                self._waiting = None

    def get_environ(self) -> dict[str, Any]:
        """The request head is complete: stop its deadline, then build the environ."""
        if self._head_timer is not None:
            self._head_timer.close()
        if self._waiting is not None:  # a request has come: no longer idle
            self.worker_state.idle.discard(self._waiting)
            self._waiting = None
        environ: dict[str, Any] = super().get_environ()
        return environ

    def log_request(self) -> None:
        """Write the access log line, unless the access log is off (then nothing per request is built for it) or
        there is no request to log: a head refused as unreadable (400) has no environ, and gunicorn's access log
        would fail on it with a traceback (pywsgi already logged why it refused it). The query of an upgrade request
        is logged redacted (a token may be in it; the app has run and saw the real values)."""
        if self.environ is not None and getattr(self.server.log, "access_log_enabled", True):
            redact_upgrade(self.environ)
            super().log_request()

    def _headers(self) -> Any:
        """The request's ``HTTP_*`` environ entries."""
        return environ_headers(self.headers)

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
            self._answer(refuse(environ, 503, reason, (("Retry-After", "1"),), logging.WARNING, why="capacity"))
            return
        options = state.options
        if state.proxies:
            environ[PROXIES_KEY] = state.proxies
        prepared = prepare(environ, options)
        if prepared is None:
            super().run_application()
            return
        if isinstance(prepared, HTTPErrorApp):  # a refused handshake (counted and logged): answer it as plain HTTP
            self._answer(prepared)
            return
        if state.stopping:  # accepted before the worker began going away: a new worker will serve the retry
            self._answer(refuse(environ, 503, "server shutting down; retry later", (("Retry-After", "1"),), why="shutdown"))
            return
        admitted = admit(environ, options)
        if isinstance(admitted, HTTPErrorApp):  # over a per-IP limit: 429 (counted, logged once per IP per interval)
            self._answer(admitted)
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
        finally:
            if admitted is not None:
                admitted()
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

    def _answer(self, app: HTTPErrorApp) -> None:
        """Answer this request with ``app`` (a refusal) as plain HTTP, and close the connection after it."""
        self.application = app
        self.close_connection = True
        super().run_application()

    def _on_accept(self, ws: WebSocket) -> None:
        """Once upgraded the connection never reads HTTP again: drop pywsgi's 8 KiB reader and its parsed headers."""
        state = self.worker_state
        opened(state.monitor, ws)
        self.headers = HeadersFromEnviron(self.environ)
        self.rfile = NO_HTTP_INPUT
        self.wsgi_input = NO_HTTP_INPUT
        self.environ["wsgi.input"] = NO_HTTP_INPUT
        if state.stopping:  # accepted by a handler that started before the worker began going away
            gevent.spawn(_close_going_away, ws, "server shutting down")

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
    except ssl.SSLError as error:  # the TLS handshake failed (plain HTTP, a probe, an untrusted certificate)
        state.tls_failures.note(address, error)
    finally:
        state.active -= 1
        close(sock, address)


def _close_going_away(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(OSError):  # gone already
        ws.close(CloseCode.GOING_AWAY, reason)


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
        state.proxies = TrustedProxies.from_gunicorn(self.cfg)

        class BoundHandler(WebSocketHandler):
            worker_state = state

        self.wsgi_handler = BoundHandler

    def init_process(self) -> None:
        """Send the library's log lines to gunicorn's error log, then start as gunicorn's gevent worker does."""
        join_gunicorn_log(self.log.error_log)
        warn_if_every_origin(current_options())
        super().init_process()

    def run(self) -> None:
        """Serve until told to go away, then exit once the last connection has ended (gunicorn's loop polls: 1 s, timeout)."""
        self._loop = gevent.get_hub().loop
        self._woken = gevent.event.Event()
        if self.reloader is not None:
            self.reloader._callback = self._reload
        if not self.alive:
            return
        ensure_exporting()  # every worker exports its counts, also one never scraped (after gunicorn's signal handlers)
        self.servers = [self._start_server(listener) for listener in self.sockets]
        while self.alive and not self.state.stopping:
            self.notify()
            self._woken.wait(1.0)
        self.go_away("server shutting down")
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for server in self.servers:
            while len(server.pool) and (remaining := deadline - time.monotonic()) > 0:
                self.notify()
                server.pool.join(timeout=min(remaining, 1.0))
        if any(len(server.pool) for server in self.servers):
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
            for server in self.servers:
                server.stop(timeout=1)

    def _start_server(self, listener: Any) -> WebSocketServer:
        """Start serving one listening socket, as gunicorn's gevent worker does."""
        listener.setblocking(1)
        environ = base_environ(self.cfg)
        environ.update({"wsgi.multithread": True, "SERVER_SOFTWARE": VERSION})
        settings: dict[str, Any] = {"application": self.wsgi, "log": self.log, "handler_class": self.wsgi_handler, "environ": environ}
        if self.cfg.is_ssl:
            settings["ssl_context"] = ssl_context(self.cfg)
        server: WebSocketServer = self.server_class(listener, spawn=Pool(self.worker_connections), **settings)
        server.start()
        return server

    def go_away(self, reason: str) -> None:
        """Retire this worker (in the event loop): stop accepting, close every WebSocket with 1001, end idle ones."""
        state = self.state
        if state.stopping:
            return
        self.alive = False
        state.stopping = True
        for server in getattr(self, "servers", ()):
            server.close()  # the listening sockets: new connections go to the other workers, or are refused
        self._woken.set()
        count = state.monitor.close_all(CloseCode.GOING_AWAY, reason)
        log.info(
            "worker %s %s: stopped accepting, closing %d WebSocket connection(s) with 1001",
            self.pid,
            reason.removeprefix("server "),
            count,
        )
        self._loop.run_callback(state.end_idle)  # the hub throws into the idle greenlets

    def _go_away_soon(self, reason: str) -> None:
        """Start :meth:`go_away` at the event loop's next turn (from a signal handler or the reloader's thread)."""
        loop = getattr(self, "_loop", None)
        if loop is not None:  # before run() there is nothing to stop; run() sees alive = False
            loop.run_callback_threadsafe(self.go_away, reason)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM (also how a reload retires old workers): stop accepting at once, close every WebSocket with 1001."""
        super().handle_exit(sig, frame)
        self._go_away_soon("server shutting down")

    def _reload(self, filename: str) -> None:
        """``--reload`` saw ``filename`` change: retire this worker now (gunicorn's own callback waits for nothing)."""
        self.log.info("Worker reloading: %s modified", filename)
        self.alive = False
        self.cfg.worker_int(self)
        self._go_away_soon("server reloading")
        raise SystemExit(0)  # ends the reloader's thread, as gunicorn's callback does: one reload per worker
