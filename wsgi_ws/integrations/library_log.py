"""Where the library's own log lines (``ws.accept``, ``ws.close``, ``ws.refuse``, ...) go when the app set nothing up.

Under gunicorn (our worker or gthread) they join gunicorn's error log, at its level. Under ``flask run`` they go to
stderr at INFO, the way Werkzeug makes its own request lines visible. An app that configured the ``wsgi_ws`` logger,
or a handler above it that takes INFO lines, is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["LOGGER", "join_gunicorn_log", "make_visible", "set_up_once"]

#: The logger of every line the library writes.
LOGGER = logging.getLogger("wsgi_ws")


def join_gunicorn_log(error_log: logging.Logger | None = None) -> None:
    """Send the library's lines to gunicorn's error log (``gunicorn.error`` unless given), at its level."""
    source = error_log if error_log is not None else logging.getLogger("gunicorn.error")
    if LOGGER.handlers or not source.handlers:
        return
    for handler in source.handlers:
        LOGGER.addHandler(handler)
    LOGGER.setLevel(source.level)
    LOGGER.propagate = False


def make_visible() -> None:
    """With no handler that would show the library's INFO lines, write them to stderr (as Werkzeug does for its own)."""
    if LOGGER.level == logging.NOTSET:
        LOGGER.setLevel(logging.INFO)
    if not _shown_somewhere(LOGGER):
        LOGGER.addHandler(logging.StreamHandler())


_set_up = False


def set_up_once(environ: Mapping[str, Any]) -> None:
    """On the first WebSocket request a middleware serves: gunicorn's error log under gunicorn, else visible lines."""
    global _set_up
    if _set_up:
        return
    _set_up = True
    if environ.get("gunicorn.socket") is not None:
        join_gunicorn_log()
    else:
        make_visible()


def _shown_somewhere(logger: logging.Logger) -> bool:
    """Whether a handler of ``logger`` or of a logger above it takes lines at ``logger``'s level."""
    level = logger.getEffectiveLevel()
    current: logging.Logger | None = logger
    while current is not None:
        if any(handler.level <= level for handler in current.handlers):
            return True
        if not current.propagate:
            break
        current = current.parent
    return False
