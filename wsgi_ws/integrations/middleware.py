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

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

from ..connection.keepalive import ConnectionMonitor, spawn_background
from ..connection.websocket import WebSocket
from ..exceptions import InvalidOption
from ..options import ENV_PREFIX, PER_SERVER, WebSocketOptions, current_options
from ..protocol.handshake import is_upgrade_request
from .access_log import redact, redacted
from .admission import admit
from .handler import opened, run_app
from .library_log import set_up_once
from .proxies import ENVIRON_KEY as PROXIES_KEY
from .proxies import TrustedProxies
from .wsgi import ENVIRON_KEY, HTTPErrorApp, check_origin, prepare

__all__ = ["WebSocketMiddleware"]

log = logging.getLogger("wsgi_ws")

#: The scope in which a middleware's own per-IP limits count its connections, under our worker.
MIDDLEWARE_SCOPE = "middleware"

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


def refuse_per_server(options: WebSocketOptions, where: str) -> None:
    """Raise :class:`InvalidOption` if ``options`` sets a per-server setting to other than the process's value."""
    process = current_options()
    for name in sorted(PER_SERVER):
        if getattr(options, name) != getattr(process, name):
            raise InvalidOption(
                f"{where}: {name}",
                f"cannot be set here: it acts once per server, before any routing; set it in gunicorn.conf.py "
                f"(wsgi_ws.configure) or as {ENV_PREFIX}{name.upper()}",
            )


class WebSocketMiddleware:
    """Wrap a WSGI app so that upgrade requests reach it as ``environ["wsgi.websocket"]`` on threaded servers.

    ``options`` (default: the process's, see ``wsgi_ws.configure``), with any ``WebSocketOptions`` field given as a
    keyword on top, apply to every WebSocket this middleware serves, on every server, keep-alive included. The
    per-server settings (``handshake_timeout``, ``hub_url``, ``hub_cluster``) cannot differ from the process's:
    a different value raises :class:`~wsgi_ws.exceptions.InvalidOption` at once, naming it.
    """

    def __init__(self, app: WSGIApp, options: WebSocketOptions | None = None, **settings: Any) -> None:
        self.app = app
        if settings:
            options = (options or current_options()).replace(label="WebSocketMiddleware: ", **settings)
        if options is not None:
            refuse_per_server(options, "WebSocketMiddleware")
        self._options = options
        self._monitor = ConnectionMonitor(spawn_background)
        self._proxies: tuple[object, TrustedProxies] | None = None  # (gunicorn's cfg, the proxies it trusts)

    @property
    def options(self) -> WebSocketOptions:
        """The options in force (given, or the process's)."""
        return self._options or current_options()

    def __call__(self, environ: MutableMapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request."""
        prepared_ws: WebSocket | None = environ.get(ENVIRON_KEY)
        if prepared_ws is not None:  # our gunicorn worker prepared it already: apply our own options, if any
            if self._options is None:
                return self.app(environ, start_response)
            refused = check_origin(environ, self._options)
            if refused is not None:
                return refused(environ, start_response)
            admitted = admit(environ, self._options, MIDDLEWARE_SCOPE)  # our own per-IP limits, on top of the server's
            if isinstance(admitted, HTTPErrorApp):
                return admitted(environ, start_response)
            prepared_ws.reconfigure(self._options)
            try:
                return self.app(environ, start_response)
            finally:
                if admitted is not None:
                    admitted()
        if not is_upgrade_request(environ):
            return self.app(environ, start_response)
        set_up_once(environ)  # gthread, flask run: the library's lines join the server's log
        options = self.options
        gunicorn_response = getattr(start_response, "__self__", None)
        cfg = getattr(gunicorn_response, "cfg", None) if environ.get("gunicorn.socket") is not None else None
        if cfg is not None:  # gunicorn's forwarded_allow_ips says whose X-Forwarded-* to believe
            environ[PROXIES_KEY] = self._proxies_of(cfg)
        prepared = prepare(environ, options)
        if prepared is None:
            return self.app(environ, start_response)
        if isinstance(prepared, HTTPErrorApp):  # counted and logged already
            return redacted(environ, prepared(environ, start_response))  # logged once this returns: no token in it
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        if sock is None or (environ.get("gunicorn.socket") is not None and not hasattr(gunicorn_response, "force_close")):
            log.error("WebSocket request for %s refused: %s", environ.get("PATH_INFO"), UNSUPPORTED)
            return redacted(environ, HTTPErrorApp(500, UNSUPPORTED)(environ, start_response))
        admitted = admit(environ, options)
        if isinstance(admitted, HTTPErrorApp):  # over a per-IP limit: 429 (counted, logged once per IP per interval)
            return redacted(environ, admitted(environ, start_response))
        monitor = self._monitor
        ws = WebSocket(sock, environ, prepared, options, on_accept=functools.partial(opened, monitor), close_socket=False)
        try:
            result = run_app(self.app, environ, start_response, ws, monitor)
        finally:
            if admitted is not None:
                admitted()
        if result is not None:
            return redacted(environ, result)  # an ordinary HTTP answer (403, 404, ...), its query redacted for the log
        return self._leave_connection(environ, gunicorn_response)

    def _proxies_of(self, cfg: object) -> TrustedProxies:
        """The proxies gunicorn's ``forwarded_allow_ips`` trusts (read once per configuration)."""
        if self._proxies is None or self._proxies[0] is not cfg:
            self._proxies = (cfg, TrustedProxies.from_gunicorn(cfg))
        return self._proxies[1]

    @staticmethod
    def _leave_connection(environ: MutableMapping[str, Any], gunicorn_response: Any) -> Iterable[bytes]:
        """Tell the server that the connection was taken over and must not see an HTTP response.

        gunicorn logs the request from the environ once this returns: its query is redacted first (a token may be in
        it). Werkzeug logs nothing for a connection that ends this way."""
        if environ.get("gunicorn.socket") is not None:
            redact(environ)
            gunicorn_response.status = "101 Switching Protocols"
            gunicorn_response.headers_sent = True  # nothing more to write
            gunicorn_response.force_close()  # and no keep-alive on it
            return []
        return _werkzeug_done()
