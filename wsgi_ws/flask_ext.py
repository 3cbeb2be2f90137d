"""Flask integration: ``@sockets.route("/ws")`` turns a plain blocking function into a WebSocket endpoint.

::

    sockets = WebSockets(app)

    @sockets.route("/ws")
    def echo(ws):
        for message in ws:
            ws.send(message)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from .glue import ENVIRON_KEY, HTTPErrorApp, inline_callable
from .middleware import WebSocketMiddleware
from .options import CONFIG_PREFIX, WebSocketOptions, configure, current_options
from .websocket import WebSocket

__all__ = ["WebSockets"]

Handler = Callable[..., Any]
_NOT_WEBSOCKET = "this URL is a WebSocket endpoint; connect with a WebSocket client (Upgrade: websocket)"


class WebSockets:
    """Registers WebSocket routes on a Flask app and applies its ``WEBSOCKET_*`` config keys."""

    def __init__(self, app: Flask | None = None) -> None:
        self.app = app
        self._routes: list[tuple[str, Handler, dict[str, Any]]] = []
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
        for rule, handler, kwargs in self._routes:
            self._register(app, rule, handler, kwargs)
        self._routes.clear()

    @property
    def options(self) -> WebSocketOptions:
        """The options in force for this process."""
        return current_options()

    def route(self, rule: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        """Decorator: serve ``rule`` as a WebSocket endpoint handled by ``handler(ws, **url_values)``."""

        def decorator(handler: Handler) -> Handler:
            if self.app is None:
                self._routes.append((rule, handler, kwargs))
            else:
                self._register(self.app, rule, handler, kwargs)
            return handler

        return decorator

    @staticmethod
    def _register(app: Flask, rule: str, handler: Handler, kwargs: dict[str, Any]) -> None:
        endpoint = kwargs.pop("endpoint", handler.__name__)

        @functools.wraps(handler)
        def view(**values: Any) -> Any:
            ws: WebSocket | None = request.environ.get(ENVIRON_KEY)
            if ws is None:
                return HTTPErrorApp(400, _NOT_WEBSOCKET)
            try:
                # A call with **values costs a C frame that the idle handler's greenlet keeps (~0.8 KB); most routes have none.
                result = handler(ws, **values) if values else handler(ws)
            except Exception as error:
                if not ws.accepted:
                    raise  # still plain HTTP: Flask answers 500 (or the HTTPException's status)
                ws.finish(error)  # logs the traceback, closes with 1011
                return Response(status=101)
            if not ws.accepted:
                if result is not None:
                    return result  # the handler answered with HTTP instead
                ws.close()  # it returned without a word: accept and close normally
            return Response(status=101)  # never sent: the server glue owns the connection now

        # Werkzeug matches upgrade requests only against rules marked websocket=True; the twin plain rule
        # lets an ordinary HTTP request to the same URL get our 400 with its reason.
        app.add_url_rule(rule, endpoint, view, methods=["GET"], websocket=True, **kwargs)
        app.add_url_rule(rule, endpoint, view, methods=["GET"], **kwargs)
