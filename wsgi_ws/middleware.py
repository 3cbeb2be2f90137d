"""WebSockets for servers other than our gunicorn worker: a WSGI middleware that takes over the connection.

``WebSocketMiddleware(app)`` recognises upgrade requests, refuses bad ones, and hands the app a deferred-accept
WebSocket in ``environ["wsgi.websocket"]``, like the worker does. It needs the server to expose the connection's
socket and a way to leave the connection alone afterwards; it knows how on:

- gunicorn's ``gthread`` and ``sync`` workers (``environ["gunicorn.socket"]``): one thread per open WebSocket;
- Werkzeug's development server, ``flask run`` (``environ["werkzeug.socket"]``): one thread per open WebSocket;
- our own ``wsgi_ws.worker.WebSocketWorker``, where it simply steps aside (the worker already did the work).

On any other server the first WebSocket request is answered 500 with a message naming the supported servers, and
the reason is logged: never a hang.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

from .glue import ENVIRON_KEY, HTTPErrorApp, origin_policy, prepare, refuse, run_app
from .monitor import ConnectionMonitor, spawn_background
from .options import WebSocketOptions, current_options
from .websocket import WebSocket

__all__ = ["WebSocketMiddleware"]

log = logging.getLogger("wsgi_ws")

StartResponse = Callable[..., Any]
WSGIApp = Callable[..., Iterable[bytes]]

UNSUPPORTED = (
    "this server gives WSGI apps no access to the connection's socket, so it cannot serve WebSockets; run under "
    "gunicorn with worker_class 'wsgi_ws.worker.WebSocketWorker' (or 'gthread'), or under 'flask run'"
)


class _ConnectionDropped(ConnectionError):
    """Raised into Werkzeug once a WebSocket ended: Werkzeug then leaves the connection quietly."""


def _werkzeug_done() -> Iterator[bytes]:
    raise _ConnectionDropped("the WebSocket connection has ended")
    yield b""  # pragma: no cover - makes this a generator


class WebSocketMiddleware:
    """Wrap a WSGI app so that upgrade requests reach it as ``environ["wsgi.websocket"]`` on threaded servers."""

    def __init__(self, app: WSGIApp, options: WebSocketOptions | None = None) -> None:
        self.app = app
        self._options = options
        self._monitor: ConnectionMonitor | None = None
        self._lock = threading.Lock()

    @property
    def options(self) -> WebSocketOptions:
        """The options in force (given, or the process's)."""
        return self._options or current_options()

    def _connection_monitor(self, options: WebSocketOptions) -> ConnectionMonitor:
        with self._lock:
            if self._monitor is None:
                self._monitor = ConnectionMonitor(options.keep_alive_interval, options.keep_alive_timeout, spawn_background)
            return self._monitor

    def __call__(self, environ: MutableMapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request."""
        prepared_ws = environ.get(ENVIRON_KEY)
        if prepared_ws is not None:  # our gunicorn worker prepared it already: apply our own options, if any
            if self._options is not None:
                if not origin_policy(self._options).allows(environ.get("HTTP_ORIGIN")):
                    refused = refuse(environ, 403, f"origin {environ.get('HTTP_ORIGIN')!r} is not allowed")
                    return refused(environ, start_response)
                prepared_ws.reconfigure(self._options)
            return self.app(environ, start_response)
        options = self.options
        prepared = prepare(environ, options)
        if prepared is None:
            return self.app(environ, start_response)
        if isinstance(prepared, HTTPErrorApp):  # counted and logged already
            return prepared(environ, start_response)
        gunicorn_response = getattr(start_response, "__self__", None)
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        if sock is None or (environ.get("gunicorn.socket") is not None and not hasattr(gunicorn_response, "force_close")):
            log.error("WebSocket request for %s refused: %s", environ.get("PATH_INFO"), UNSUPPORTED)
            return HTTPErrorApp(500, UNSUPPORTED)(environ, start_response)
        ws = WebSocket(sock, environ, prepared, options, monitor=self._connection_monitor(options), close_socket=False)
        result = run_app(self.app, environ, start_response, ws)
        if result is not None:
            return result  # an ordinary HTTP answer (403, 404, ...)
        return self._leave_connection(environ, gunicorn_response)

    @staticmethod
    def _leave_connection(environ: MutableMapping[str, Any], gunicorn_response: Any) -> Iterable[bytes]:
        """Tell the server that the connection was taken over and must not see an HTTP response."""
        if environ.get("gunicorn.socket") is not None:
            gunicorn_response.status = "101 Switching Protocols"
            gunicorn_response.headers_sent = True  # nothing more to write
            gunicorn_response.force_close()  # and no keep-alive on it
            return []
        return _werkzeug_done()
