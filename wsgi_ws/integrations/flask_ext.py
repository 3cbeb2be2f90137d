"""Flask integration: ``@sockets.route("/ws")`` turns a plain blocking function into a WebSocket endpoint.

::

    sockets = WebSockets(app)

    @sockets.route("/ws")
    def echo(ws):
        for message in ws:
            ws.send(message)

    @sockets.route("/upload", max_message_size="64MiB", keep_alive_interval=10)   # options for this route only
    def upload(ws): ...

    bp = Blueprint("rooms", __name__)

    @sockets.route("/room/<name>", bp=bp)       # on a blueprint: served once the blueprint is registered
    def room(ws, name): ...
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request

from .. import metrics
from ..connection.websocket import WebSocket
from ..exceptions import InvalidOption
from ..options import CONFIG_PREFIX, PER_SERVER, WebSocketOptions, configure, current_options
from .admission import LIMIT_OPTIONS, Release, admit
from .handler import handler_failed
from .middleware import WebSocketMiddleware
from .wsgi import ENVIRON_KEY, HTTPErrorApp, check_origin, inline_callable, warn_if_every_origin

__all__ = ["RouteOptions", "WebSockets"]

Handler = Callable[..., Any]
_NOT_WEBSOCKET = "this URL is a WebSocket endpoint; connect with a WebSocket client (Upgrade: websocket)"
_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(WebSocketOptions))
_ORIGIN_OPTIONS = frozenset({"allowed_origins", "require_origin"})


class RouteOptions:
    """A route's own settings, applied on top of the options the server gives its connections.

    Made (and checked) when the route is declared: a bad value or a per-server setting raises
    :class:`~wsgi_ws.exceptions.InvalidOption` naming the route and the setting, at import time.
    """

    def __init__(self, rule: str, settings: dict[str, Any]) -> None:
        label = f"route {rule}: "
        for name in sorted(settings):
            if name in PER_SERVER:
                raise InvalidOption(label + name, "is a per-server setting (it acts before any routing); set it in gunicorn.conf.py")
        checked = WebSocketOptions().replace(label=label, **settings)
        #: The settings this route changes, parsed and validated.
        self.changes = {name: getattr(checked, name) for name in settings}
        #: True when the route has an origin policy of its own (checked again, before accept).
        self.checks_origin = bool(_ORIGIN_OPTIONS & settings.keys())
        #: True when the route has per-IP limits of its own (counted for this route alone, before its handler runs).
        self.checks_limits = bool(LIMIT_OPTIONS & settings.keys())
        self.rule = rule
        warn_if_every_origin(checked, f"route {rule}")
        self._base: WebSocketOptions | None = None
        self._resolved: WebSocketOptions | None = None

    def reconfigure(self, ws: WebSocket, environ: Any) -> HTTPErrorApp | Release | None:
        """Give a connection not yet accepted this route's options: the 403 if the route's origin policy refuses it, the
        429 if its per-IP limits do; else the :data:`~wsgi_ws.integrations.admission.Release` of its count, if any."""
        options = self.apply(ws.options)
        if self.checks_origin:
            refused = check_origin(environ, options)
            if refused is not None:
                return refused
        admitted = admit(environ, options, self.rule) if self.checks_limits else None
        if not isinstance(admitted, HTTPErrorApp):
            ws.reconfigure(options)
        return admitted

    def apply(self, base: WebSocketOptions) -> WebSocketOptions:
        """``base`` (the server's or middleware's options) with this route's changes; cached for the same base."""
        if base is not self._base or self._resolved is None:
            self._resolved = dataclasses.replace(base, **self.changes)
            self._base = base
        return self._resolved


class WebSockets:
    """Registers WebSocket routes on a Flask app and applies its ``WEBSOCKET_*`` config keys."""

    def __init__(self, app: Flask | None = None) -> None:
        self.app = app
        self._routes: list[tuple[str, Handler, dict[str, Any], RouteOptions | None]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Bind to ``app``: register the routes declared so far and apply ``WEBSOCKET_*`` config keys."""
        self.app = app
        app.extensions["wsgi_ws"] = self
        # On servers other than our gunicorn worker (gthread, flask run) the middleware takes over the connection;
        # under the worker it steps aside. Installed as a bound method: Flask calls it without a new C frame.
        app.wsgi_app = inline_callable(WebSocketMiddleware(app.wsgi_app))  # type: ignore[method-assign]
        settings = {key: value for key, value in app.config.items() if key.startswith(CONFIG_PREFIX)}
        if settings:
            configure(current_options().merged(settings, CONFIG_PREFIX))
        warn_if_every_origin(current_options())
        for rule, handler, kwargs, route_options in self._routes:
            _register(app, rule, handler, kwargs, route_options)
        self._routes.clear()

    @property
    def options(self) -> WebSocketOptions:
        """The options in force for this process (a route's own settings apply on top, to its connections only)."""
        return current_options()

    def route(self, rule: str, bp: Blueprint | None = None, **kwargs: Any) -> Callable[[Handler], Handler]:
        """Decorator: serve ``rule`` as a WebSocket endpoint handled by ``handler(ws, **url_values)``.

        Keywords that name a ``WebSocketOptions`` field (``max_message_size="64MiB"``, ``keep_alive_interval=10``,
        ``allowed_origins=[...]``, ...) apply to this route's connections only, on every server; the others
        (``endpoint``, ``defaults``, ...) go to Flask's ``add_url_rule``. With ``bp`` the route is added to that
        blueprint (and served wherever the blueprint is registered) instead of the app.
        """
        settings = {name: kwargs.pop(name) for name in list(kwargs) if name in _OPTION_NAMES}
        route_options = RouteOptions(rule, settings) if settings else None

        def decorator(handler: Handler) -> Handler:
            if bp is not None:
                _register(bp, rule, handler, kwargs, route_options)
            elif self.app is None:
                self._routes.append((rule, handler, kwargs, route_options))
            else:
                _register(self.app, rule, handler, kwargs, route_options)
            return handler

        return decorator


def _register(target: Flask | Blueprint, rule: str, handler: Handler, kwargs: dict[str, Any], route_options: RouteOptions | None) -> None:
    kwargs = dict(kwargs)
    endpoint = kwargs.pop("endpoint", handler.__name__)

    @functools.wraps(handler)
    def view(**values: Any) -> Any:
        ws: WebSocket | None = request.environ.get(ENVIRON_KEY)
        if request.url_rule is not None:
            request.environ[metrics.ROUTE_KEY] = request.url_rule.rule  # the metrics' route label
        if ws is None:
            return HTTPErrorApp(400, _NOT_WEBSOCKET)
        release = None
        if route_options is not None and not ws.accepted:
            admitted = route_options.reconfigure(ws, request.environ)
            if isinstance(admitted, HTTPErrorApp):
                return admitted  # refused by the route's origin policy (403) or its per-IP limits (429)
            release = admitted
        try:
            # A call with **values costs a C frame that the idle handler's greenlet keeps (~0.8 KB); most routes have none.
            result = handler(ws, **values) if values else handler(ws)
        except Exception as error:
            if not ws.accepted:
                raise  # still plain HTTP: Flask answers 500 (or the HTTPException's status)
            handler_failed(ws, error)  # logs the traceback, closes with 1011
            return Response(status=101)
        finally:
            if release is not None:
                release()
        if not ws.accepted:
            if result is not None:
                return result  # the handler answered with HTTP instead
            ws.close()  # it returned without a word: accept and close normally
        return Response(status=101)  # never sent: the server glue owns the connection now

    # Werkzeug matches upgrade requests only against rules marked websocket=True; the twin plain rule
    # lets an ordinary HTTP request to the same URL get our 400 with its reason.
    target.add_url_rule(rule, endpoint, view, methods=["GET"], websocket=True, **kwargs)
    target.add_url_rule(rule, endpoint, view, methods=["GET"], **kwargs)
