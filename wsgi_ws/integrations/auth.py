"""The bearer token of a WebSocket request, wherever the client could put it.

A browser's ``new WebSocket(url, protocols)`` can set no header, so besides ``Authorization: Bearer`` (RFC 6750
§2.1, for clients that can) the token may come in the ``access_token`` query parameter (RFC 6750 §2.3) or, the
browser-friendly way that keeps it out of URLs, as one of the offered subprotocols: ``bearer.<token>``, next to the
application's real subprotocol::

    new WebSocket("wss://example.com/ws", ["wsgi-ws", "bearer." + token])

The server then accepts with the real one (``ws.accept(subprotocol="wsgi-ws")``, or ``subprotocols=("wsgi-ws",)``
in the options), never with the ``bearer.`` one: that would send the token back in the response.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..connection.info import ConnectionInfo

__all__ = ["BEARER_SUBPROTOCOL", "QUERY_PARAMETER", "bearer_token", "offered_subprotocols"]

#: The prefix of the subprotocol that carries a token: ``bearer.<token>``.
BEARER_SUBPROTOCOL = "bearer."
#: The query parameter that carries a token (RFC 6750 §2.3).
QUERY_PARAMETER = "access_token"


def bearer_token(request: ConnectionInfo | Mapping[str, Any], query_parameter: str | None = QUERY_PARAMETER) -> str | None:
    """The bearer token the client sent, or None: from ``Authorization: Bearer <token>``, else an offered
    subprotocol ``bearer.<token>``, else the ``access_token`` query parameter (``query_parameter=None``: not there).

    ``request`` is the WebSocket (``ws``) or a WSGI environ. What the caller must know:

    - The token is returned as sent, **unverified**: check its signature, expiry and audience yourself, before
      accepting, and refuse with an HTTP answer while you still can (``abort(401)``; nothing was sent yet). Then
      ``ws.close_at(claims["exp"])`` closes the connection when the token expires.
    - Sent as a subprotocol, the token must be made of the characters a subprotocol may hold (RFC 7230 ``tchar``:
      JWTs and base64url are; encode anything else as base64url on the client, and decode it yourself). The client
      must offer a real subprotocol too, and the handler accept with that one (``ws.accept(subprotocol=...)``), never
      the ``bearer.`` one, which would echo the token in the response; a browser fails a handshake whose response
      names no subprotocol when it offered some.
    - In the query string, wsgi-ws logs the request's query redacted once the app has run (gunicorn's access log,
      Werkzeug's request log), so read it during the handler (``request.args`` has the real values). A proxy in
      front logs the URL itself: exclude the query from its log (nginx: log ``$uri``, not ``$request``), or prefer
      the subprotocol.
    - Only over ``wss://`` is a token safe from the network, wherever it travels.
    """
    environ = request.environ if isinstance(request, ConnectionInfo) else request
    scheme, _, credentials = str(environ.get("HTTP_AUTHORIZATION", "")).strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    for name in offered_subprotocols(request, tokens=True):
        if name.startswith(BEARER_SUBPROTOCOL) and len(name) > len(BEARER_SUBPROTOCOL):
            return name[len(BEARER_SUBPROTOCOL) :]
    if query_parameter is not None:
        query = str(environ.get("QUERY_STRING", ""))
        if query:
            values = urllib.parse.parse_qs(query, keep_blank_values=False).get(query_parameter)
            if values:
                return values[0]
    return None


def offered_subprotocols(request: ConnectionInfo | Mapping[str, Any], tokens: bool = False) -> tuple[str, ...]:
    """The subprotocols the client offered, in its order, without the ``bearer.`` ones (``tokens=True``: with them).

    ``ws.accept(subprotocol=offered_subprotocols(ws)[0])`` accepts with the client's first real subprotocol.
    """
    if isinstance(request, ConnectionInfo):
        offered = request.offered_subprotocols
    else:
        header = str(request.get("HTTP_SEC_WEBSOCKET_PROTOCOL", ""))
        offered = tuple(name.strip() for name in header.split(",") if name.strip())
    return offered if tokens else tuple(name for name in offered if not name.startswith(BEARER_SUBPROTOCOL))
