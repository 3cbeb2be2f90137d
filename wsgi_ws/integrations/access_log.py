"""Keeping tokens out of access logs: the query string of a WebSocket upgrade request is logged redacted.

Browsers cannot set headers on a WebSocket, so a token often travels in the URL (``/ws?access_token=...``), and
every server writes the URL to its access log. Once the application has run (it saw the real values:
``request.args``, :func:`wsgi_ws.bearer_token`), :func:`redact` replaces every value in the query string of an upgrade
request with ``[redacted]``, keeping the names: ``/ws?access_token=[redacted]&room=[redacted]``.

- gunicorn (our gevent worker, ``gthread``, ``sync``) formats its access line from the environ after the app
  returned: ``%(r)s`` from ``RAW_URI``, ``%(q)s`` from ``QUERY_STRING``; :func:`redact` rewrites those (and
  ``REQUEST_URI``) in place.
- Werkzeug (``flask run``) logs the request line it parsed itself, not the environ: :func:`redact` marks the request's
  thread, and a filter on the ``werkzeug`` logger rewrites that request's line.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import MutableMapping
from typing import Any, TypeVar

from ..per_process import PerProcess
from ..protocol.handshake import is_upgrade_request

__all__ = ["REDACTED", "WerkzeugRedaction", "redact", "redact_query", "redact_upgrade", "redacted"]

T = TypeVar("T")

#: What stands in the log for each query value.
REDACTED = "[redacted]"
_URI_KEYS = ("RAW_URI", "REQUEST_URI")
_QUERY = re.compile(r"\?([^\s\x1b\"]*)")  # a query in a log line: to the next space, quote or colour code


def redact_query(query: str) -> str:
    """``a=1&b=2`` -> ``a=[redacted]&b=[redacted]``; a part without ``=`` is taken for a value (``?TOKEN``)."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals else (REDACTED if part else part))
    return "&".join(parts)


def _redact_target(target: str) -> str:
    path, question, query = target.partition("?")
    return f"{path}?{redact_query(query)}" if question else target


def redact(environ: MutableMapping[str, Any]) -> None:
    """Redact the query of this request in what the server will log (call it after the app has run)."""
    query = environ.get("QUERY_STRING")
    if not query or query == redact_query(query):
        return
    environ["QUERY_STRING"] = redact_query(query)
    original = environ.get("RAW_URI")
    for key in _URI_KEYS:
        value = environ.get(key)
        if isinstance(value, str):
            environ[key] = _redact_target(value)
    if environ.get("werkzeug.socket") is not None and isinstance(original, str):
        _werkzeug_filter.get().expect(original)


def redacted(environ: MutableMapping[str, Any], answer: T) -> T:
    """``answer`` (the app's HTTP answer to an upgrade request), once :func:`redact` has run: ``return redacted(...)``."""
    redact(environ)
    return answer


def redact_upgrade(environ: MutableMapping[str, Any] | None) -> None:
    """:func:`redact` if ``environ`` is a WebSocket upgrade request's."""
    if environ is not None and is_upgrade_request(environ):
        redact(environ)


class WerkzeugRedaction(logging.Filter):
    """Rewrites the query of the request line that Werkzeug logs for a request :func:`redact` marked.

    Werkzeug calls the app and logs the request in the same thread (one per request), so the mark is per thread: the
    original request target, consumed by the first log line that contains it.
    """

    def __init__(self) -> None:
        super().__init__("werkzeug")
        self._local = threading.local()

    def expect(self, target: str) -> None:
        """The next request line this thread logs with ``target``'s path in it gets its query redacted."""
        path = target.partition("?")[0]
        try:
            from werkzeug.urls import uri_to_iri

            shown = uri_to_iri(path)  # the form Werkzeug logs
        except Exception:  # no Werkzeug, or a path it cannot show: the raw one
            shown = path
        self._local.target = (path, shown)

    def filter(self, record: logging.LogRecord) -> bool:
        target = getattr(self._local, "target", None)
        if target is None or not isinstance(record.args, tuple):
            return True
        path, shown = target
        args = list(record.args)
        for index, value in enumerate(args):
            if isinstance(value, str) and "?" in value and (path in value or shown in value):
                args[index] = _QUERY.sub(lambda match: "?" + redact_query(match.group(1)), value)
                record.args = tuple(args)
                self._local.target = None
                break
        return True


def _install_filter() -> WerkzeugRedaction:
    made = WerkzeugRedaction()
    logging.getLogger("werkzeug").addFilter(made)
    return made


#: The filter on the ``werkzeug`` logger, installed on first use.
_werkzeug_filter = PerProcess(_install_filter)
