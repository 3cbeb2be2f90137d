"""Server-independent WSGI glue: recognise an upgrade request, refuse a bad one with its HTTP answer.

Every server integration (the gunicorn worker, the middleware) calls :func:`prepare` for each request, then either
runs the refusal app it returns or makes the WebSocket and hands it to :func:`wsgi_ws.integrations.handler.run_app`.
"""

from __future__ import annotations

import http
import inspect
import logging
import types
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from .. import metrics
from ..connection.info import peer_of
from ..options import WebSocketOptions
from ..protocol.errors import HandshakeRefused
from ..protocol.handshake import HandshakeRequest, is_upgrade_request, validate_request
from ..protocol.origins import ALLOW_ALL
from . import prometheus as _prometheus  # noqa: F401  (it starts exporting before this process first counts)
from .proxies import own_origins

__all__ = ["ENVIRON_KEY", "HTTPErrorApp", "StartResponse", "check_origin", "inline_callable", "prepare", "refuse", "warn_if_every_origin"]

log = logging.getLogger("wsgi_ws")

#: The environ key under which the WebSocket is handed to the application (gevent-websocket's key).
ENVIRON_KEY = "wsgi.websocket"

#: Set in the environ of a request :func:`refuse` counted (so the app's HTTP answer to it is not counted again).
REFUSED_KEY = "wsgi_ws.refused"

StartResponse = Callable[..., Any]


def prepare(environ: MutableMapping[str, Any], options: WebSocketOptions) -> HandshakeRequest | HTTPErrorApp | None:
    """None for an ordinary HTTP request; an :class:`HTTPErrorApp` answering a refused upgrade; or the valid request."""
    if not is_upgrade_request(environ):
        return None
    try:
        return validate_request(environ, options.origin_policy, lambda: own_origins(environ))
    except HandshakeRefused as error:
        return refuse(environ, error.status, error.reason, error.headers)


def check_origin(environ: MutableMapping[str, Any], options: WebSocketOptions) -> HTTPErrorApp | None:
    """The 403 answer when ``options``' origin policy refuses this request's ``Origin`` (a route's or middleware's own)."""
    refusal = options.origin_policy.refusal(environ.get("HTTP_ORIGIN"), lambda: own_origins(environ))
    return None if refusal is None else refuse(environ, 403, refusal)


def refuse(
    environ: MutableMapping[str, Any],
    status: int,
    reason: str,
    headers: tuple[tuple[str, str], ...] = (),
    level: int = logging.INFO,
    why: str | None = None,
) -> HTTPErrorApp:
    """Count and log a refused request (``ws.refuse``); returns the app that answers it.

    ``why`` is the word it is counted under (``capacity``, ``shutdown``); by default ``origin`` for a 403, else
    ``handshake``."""
    metrics.refused(environ, why or ("origin" if status == 403 else "handshake"))
    environ[REFUSED_KEY] = True
    log.log(level, "ws.refuse path=%s peer=%s status=%s reason=%r", environ.get("PATH_INFO"), peer_of(environ), status, reason)
    return HTTPErrorApp(status, reason, headers)


#: ``inline_callable``'s answers by ``id(app)``, with the app itself (kept alive, so its id is not reused).
_INLINED: dict[int, tuple[object, Callable[..., Any]]] = {}


def inline_callable(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app``, or for an instance of a Python class its bound ``__call__``: the same call, with less C stack.

    CPython 3.11 runs a Python function or bound method in the caller's C frame, but calling an instance goes
    through its type's call slot and a new C frame (about 0.8 KB). A handler idle in ``receive()`` keeps every C
    frame under it in its greenlet's saved stack, so each one avoided is memory saved per idle connection.
    The answer is remembered per app (``inspect.getattr_static`` costs a few percent of a handshake).
    """
    cached = _INLINED.get(id(app))
    if cached is not None and cached[0] is app:
        return cached[1]
    call = inspect.getattr_static(type(app), "__call__", None)
    inlined = types.MethodType(call, app) if isinstance(call, types.FunctionType) else app
    if len(_INLINED) >= 64:  # apps made per request: do not keep them all
        _INLINED.clear()
    _INLINED[id(app)] = (app, inlined)
    return inlined


class HTTPErrorApp:
    """A WSGI app that answers with a fixed status and a plain-text reason (the server glue closes the connection)."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = f"{status} {http.HTTPStatus(status).phrase}: {reason}\n".encode()

    def __call__(self, environ: MutableMapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer the request."""
        start_response(
            f"{self.status} {http.HTTPStatus(self.status).phrase}",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(self.body))),
                *self.headers,  # no "Connection: close": WSGI apps may not set hop-by-hop headers (PEP 3333)
            ],
        )
        return [self.body]


_warned: set[str] = set()


def warn_if_every_origin(options: WebSocketOptions, where: str = "the server") -> None:
    """Log a warning (once per process and place) when ``options`` allow every origin (``allowed_origins="*"``).

    With every origin allowed, a page on any site can open a WebSocket to this server with its visitors' cookies
    (cross-site WebSocket hijacking): the application must then authenticate every connection some other way.
    """
    if ALLOW_ALL not in options.allowed_origins:
        return
    message = (
        f"{where} allows WebSocket connections from every origin (allowed_origins='*'): any web page can open one with "
        "its visitors' cookies; authenticate connections another way, or list the origins allowed"
    )
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)
