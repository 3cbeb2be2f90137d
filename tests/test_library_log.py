"""Where the library's log lines go when the app set nothing up: gunicorn's error log, or stderr as Werkzeug does."""

from __future__ import annotations

import logging

import pytest

from wsgi_ws.integrations import library_log

pytestmark = pytest.mark.unit


@pytest.fixture
def ours(monkeypatch: pytest.MonkeyPatch) -> logging.Logger:
    """A fresh stand-in for the ``wsgi_ws`` logger, under a parent of its own with no handler."""
    parent = logging.Logger("test-parent")
    logger = logging.Logger("test-wsgi-ws")
    logger.parent = parent
    monkeypatch.setattr(library_log, "LOGGER", logger)
    monkeypatch.setattr(library_log, "_set_up", False)
    return logger


def test_with_no_handler_anywhere_info_lines_go_to_stderr(ours: logging.Logger) -> None:
    library_log.make_visible()
    assert ours.level == logging.INFO
    assert [type(handler) for handler in ours.handlers] == [logging.StreamHandler]


def test_an_app_that_set_up_logging_is_left_alone(ours: logging.Logger) -> None:
    assert ours.parent is not None
    ours.parent.addHandler(logging.NullHandler())  # the app's handler above, taking every level
    library_log.make_visible()
    assert ours.handlers == []


def test_under_gunicorn_the_lines_join_its_error_log_at_its_level(ours: logging.Logger) -> None:
    error_log = logging.Logger("test-gunicorn-error", logging.WARNING)
    handler = logging.NullHandler()
    error_log.addHandler(handler)
    library_log.join_gunicorn_log(error_log)
    assert ours.handlers == [handler] and ours.level == logging.WARNING and not ours.propagate


def test_set_up_once_picks_by_server_and_only_once(ours: logging.Logger) -> None:
    library_log.set_up_once({"werkzeug.socket": object()})
    library_log.set_up_once({"werkzeug.socket": object()})
    assert len(ours.handlers) == 1
