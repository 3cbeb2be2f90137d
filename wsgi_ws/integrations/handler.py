"""Running a WebSocket application and owning the connection's end: the one place every server integration uses.

Modeled on the handler call of ``websockets.sync.server``: when the connection is accepted it is registered
(:func:`opened`: keep-alive, metrics, the ``ws.accept`` line); the application runs (:func:`run_app`); an error after
accept becomes close 1011 with its traceback in the log (:func:`handler_failed`), never an HTTP 500; then the
connection is ended and unregistered (:func:`finish`: the closing handshake, finish callbacks, metrics, the
``ws.close`` line). An error before accept is still plain HTTP: it propagates, and the server answers 500.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from .. import metrics
from ..connection.keepalive import ConnectionMonitor
from ..connection.websocket import WebSocket
from ..exceptions import ConnectionClosed, InvalidMessage
from ..protocol.session import CloseCode
from .wsgi import ENVIRON_KEY, REFUSED_KEY, StartResponse, inline_callable

__all__ = ["HANDLER_ERROR", "finish", "handler_failed", "opened", "run_app"]

log = logging.getLogger("wsgi_ws")

#: The environ key where :func:`handler_failed` leaves the exception a handler raised after accepting (the one that
#: closed the connection with 1011), for whoever called the app: ``wsgi_ws.testing.TestClient`` re-raises it.
HANDLER_ERROR = "wsgi_ws.handler_error"


def opened(monitor: ConnectionMonitor, ws: WebSocket) -> None:
    """Register a connection that was just accepted: keep-alive, metrics, the ``ws.accept`` log line."""
    monitor.add(ws)
    metrics.opened(ws)
    if log.isEnabledFor(logging.INFO):  # the arguments cost more than the cached level check
        log.info(
            "ws.accept path=%s peer=%s subprotocol=%s compression=%s",
            ws.path,
            ws.peer,
            ws.subprotocol or "-",
            "permessage-deflate" if ws.compressed else "-",
        )


def run_app(
    app: Callable[..., Iterable[bytes]],
    environ: MutableMapping[str, Any],
    start_response: StartResponse,
    ws: WebSocket,
    monitor: ConnectionMonitor,
) -> Iterable[bytes] | None:
    """Run ``app`` with ``ws`` in the environ; its HTTP answer if it never accepted, else None once the connection ended.

    An error before accept propagates (the server answers 500); after accept it is logged and closes with 1011.
    """
    environ[ENVIRON_KEY] = ws
    environ["wsgi.websocket_version"] = "13"
    try:
        result: Iterable[bytes] = inline_callable(app)(environ, start_response)
    except Exception as error:
        if not ws.accepted:
            ws.request_ended()
            raise
        finish(ws, monitor, error)
        return None
    except BaseException:  # worker shutdown: GreenletExit, SystemExit
        if ws.accepted:
            finish(ws, monitor)
        raise
    if not ws.accepted:
        ws.request_ended()
        if not environ.get(REFUSED_KEY):  # else counted when refused (a route's origin or limits)
            metrics.refused(environ, "application")
        return result  # an ordinary HTTP answer (403, 404, ...)
    close = getattr(result, "close", None)
    if close is not None:
        close()
    finish(ws, monitor)
    return None


def handler_failed(ws: WebSocket, error: Exception) -> None:
    """A handler raised ``error`` after accepting: log it, and close with 1011 unless the connection is closed already.

    The error is also left in the request's environ under :data:`HANDLER_ERROR` (not one that ended the handler on a
    connection that had already closed: that is a normal end, logged as one line)."""
    if isinstance(error, ConnectionClosed) or (isinstance(error, InvalidMessage) and ws.closed):  # receive_json closed it
        log.info("WebSocket handler for %s ended on a closed connection (%s: %s)", ws.path, type(error).__name__, error)
        return
    if isinstance(ws.environ, MutableMapping):
        ws.environ[HANDLER_ERROR] = error
    log.error("WebSocket handler for %s raised; closing with 1011", ws.path, exc_info=error)
    if not ws.closed:
        with contextlib.suppress(OSError):  # the connection broke meanwhile
            ws.close(CloseCode.INTERNAL_ERROR, "internal server error")


def finish(ws: WebSocket, monitor: ConnectionMonitor, error: Exception | None = None) -> None:
    """End an accepted connection after its handler returned (or raised ``error``), and unregister it."""
    if error is not None:
        handler_failed(ws, error)
    try:
        ws.end()
    finally:
        monitor.discard(ws)
        for callback in ws.finish_callbacks:
            try:
                callback()
            except Exception:
                log.exception("WebSocket %s: a finish callback failed", ws.path)
        metrics.closed(ws)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "ws.close path=%s peer=%s code=%s reason=%r duration=%.1fs messages_in=%d messages_out=%d bytes_in=%d bytes_out=%d",
                ws.path,
                ws.peer,
                ws.close_code,
                ws.close_reason or "",
                ws.duration,
                ws.messages_received,
                ws.messages_sent,
                ws.bytes_received,
                ws.bytes_sent,
            )
