"""The gunicorn worker: gunicorn's gevent pywsgi worker whose request handler speaks WebSocket.

Use it with ``worker_class = "wsgi_ws.worker.WebSocketWorker"`` (the project's ``gunicorn.conf.py`` does).
One greenlet serves each connection; a WebSocket handler runs in it and blocks only that greenlet.
"""

from __future__ import annotations

import logging
from io import BufferedReader
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from .glue import ENVIRON_KEY, prepare
from .options import current_options
from .websocket import WebSocket

__all__ = ["WebSocketHandler", "WebSocketWorker"]


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

    def run_application(self) -> None:
        """Run the app for one request; for a WebSocket request, own the connection until it closes."""
        environ = self.environ
        options = current_options()
        prepared = prepare(environ, options)
        if prepared is None:
            super().run_application()
            return
        if callable(prepared):  # a refused handshake: answer it as plain HTTP
            self.application = prepared
            self.close_connection = True
            super().run_application()
            return
        ws = WebSocket(self.socket, environ, prepared, options, buffered=take_buffered(self.rfile, self.socket), defer=gevent.spawn)
        environ[ENVIRON_KEY] = ws
        environ["wsgi.websocket_version"] = "13"
        try:
            result: Any = self.application(environ, self.start_response)
        except Exception as error:
            if not ws.accepted:
                raise  # still plain HTTP: pywsgi logs it and answers 500
            ws.finish(error)
            self._after_websocket()
            return
        except BaseException:  # worker shutdown: GreenletExit, SystemExit
            if ws.accepted:
                ws.finish()
                self._after_websocket()
            raise
        if not ws.accepted:  # the app answered with HTTP (403, 404, ...): send exactly that
            self.result = result
            try:
                self.process_result()
            finally:
                self._close_result(result)
                self.result = None
            return
        self._close_result(result)
        ws.finish()
        self._after_websocket()

    def _after_websocket(self) -> None:
        self.close_connection = True
        self.status = b"101 Switching Protocols"
        self.code = 101

    @staticmethod
    def _close_result(result: Any) -> None:
        close = getattr(result, "close", None)
        if close is not None:
            close()


class WebSocketWorker(GeventPyWSGIWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn worker class: gevent pywsgi with WebSocket support (``wsgi_ws.worker.WebSocketWorker``)."""

    wsgi_handler = WebSocketHandler

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
