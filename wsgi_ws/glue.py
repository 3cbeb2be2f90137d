"""Server-independent WSGI glue: recognise an upgrade request, refuse a bad one, or make its WebSocket.

Every server integration (the gunicorn worker, later others) calls :func:`prepare` for each request and
then either runs the refusal app it returns or puts the WebSocket into ``environ["wsgi.websocket"]``.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from .exceptions import HandshakeError
from .handshake import HandshakeRequest, is_upgrade_request, validate_request
from .options import WebSocketOptions
from .origins import OriginPolicy

__all__ = ["ENVIRON_KEY", "HTTPErrorApp", "origin_policy", "prepare"]

#: The environ key under which the WebSocket is handed to the application (gevent-websocket's key).
ENVIRON_KEY = "wsgi.websocket"

StartResponse = Callable[..., Any]

_policies: dict[tuple[tuple[str, ...], bool], OriginPolicy] = {}


def origin_policy(options: WebSocketOptions) -> OriginPolicy:
    """The origin policy of these options (built once per distinct setting)."""
    key = (options.allowed_origins, options.require_origin)
    policy = _policies.get(key)
    if policy is None:
        policy = _policies[key] = OriginPolicy(*key)
    return policy


def prepare(environ: MutableMapping[str, Any], options: WebSocketOptions) -> HandshakeRequest | HTTPErrorApp | None:
    """None for an ordinary HTTP request; an :class:`HTTPErrorApp` answering a refused upgrade; or the valid request."""
    if not is_upgrade_request(environ):
        return None
    try:
        return validate_request(environ, origin_policy(options))
    except HandshakeError as error:
        return HTTPErrorApp(error.status, error.reason, error.headers)


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
