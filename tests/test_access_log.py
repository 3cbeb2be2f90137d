"""Redacting the query of upgrade requests in what servers log: the environ gunicorn formats, Werkzeug's log line.

tests/test_e2e_auth.py reads the real access logs of all three servers."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from wsgi_ws.integrations.access_log import REDACTED, WerkzeugRedaction, redact, redact_query, redact_upgrade, redacted

pytestmark = pytest.mark.unit

UPGRADE = {"HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade"}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("access_token=abc", "access_token=[redacted]"),
        ("a=1&b=&c", "a=[redacted]&b=[redacted]&[redacted]"),  # a part without "=" may be the token itself
        ("SECRET", "[redacted]"),
        ("a=1&&b=2", "a=[redacted]&&b=[redacted]"),
        ("", ""),
        ("x=[redacted]", "x=[redacted]"),
    ],
)
def test_redact_query(query: str, logged: str) -> None:
    assert redact_query(query) == logged


@pytest.mark.timeout(10)
def test_redact_rewrites_what_gunicorn_formats_and_only_for_upgrades() -> None:
    environ: dict[str, Any] = {
        **UPGRADE,
        "PATH_INFO": "/ws",
        "QUERY_STRING": "access_token=abc&room=1",
        "RAW_URI": "/ws?access_token=abc&room=1",
        "REQUEST_URI": "http://h/ws?access_token=abc&room=1",
    }
    redact_upgrade(environ)
    assert environ["QUERY_STRING"] == f"access_token={REDACTED}&room={REDACTED}"
    assert environ["RAW_URI"] == f"/ws?access_token={REDACTED}&room={REDACTED}"
    assert environ["REQUEST_URI"] == f"http://h/ws?access_token={REDACTED}&room={REDACTED}"
    assert environ["PATH_INFO"] == "/ws"
    plain = {"QUERY_STRING": "q=1", "RAW_URI": "/search?q=1"}
    redact_upgrade(plain)
    assert plain == {"QUERY_STRING": "q=1", "RAW_URI": "/search?q=1"}, "ordinary requests are logged as they are"
    redact_upgrade(None)
    answer = [b"401"]
    bare = {"QUERY_STRING": "t=1", "RAW_URI": "/ws?t=1"}
    assert redacted(bare, answer) is answer and bare["RAW_URI"] == f"/ws?t={REDACTED}"


def werkzeug_record(line: str) -> logging.LogRecord:
    """A record as Werkzeug's WSGIRequestHandler.log_request makes it (message, args: request line, status, size)."""
    return logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '127.0.0.1 - - [date] "%s" %s %s', (line, "401", "-"), None)


@pytest.mark.timeout(10)
def test_the_werkzeug_filter_rewrites_the_marked_requests_line_in_its_own_thread_only() -> None:
    werkzeug_filter = WerkzeugRedaction()
    werkzeug_filter.expect("/ws?access_token=abc")
    elsewhere: list[str] = []

    def other_thread() -> None:  # another request's line, in another thread, is left alone
        record = werkzeug_record("GET /ws?access_token=zzz HTTP/1.1")
        werkzeug_filter.filter(record)
        elsewhere.append(record.getMessage())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert "access_token=zzz" in elsewhere[0]
    unrelated = werkzeug_record("GET /other?x=1 HTTP/1.1")
    assert werkzeug_filter.filter(unrelated) and "x=1" in unrelated.getMessage()
    styled = werkzeug_record("\x1b[31m\x1b[1mGET /ws?access_token=abc HTTP/1.1\x1b[0m")  # Werkzeug's colours
    assert werkzeug_filter.filter(styled)
    assert styled.getMessage() == f'127.0.0.1 - - [date] "\x1b[31m\x1b[1mGET /ws?access_token={REDACTED} HTTP/1.1\x1b[0m" 401 -'
    again = werkzeug_record("GET /ws?access_token=abc HTTP/1.1")
    werkzeug_filter.filter(again)
    assert "abc" in again.getMessage(), "the mark is used once"


@pytest.mark.timeout(10)
def test_redact_under_werkzeug_installs_the_filter_on_its_logger() -> None:
    environ = {"QUERY_STRING": "access_token=abc", "RAW_URI": "/ws?access_token=abc", "werkzeug.socket": object()}
    redact(environ)
    filters = [f for f in logging.getLogger("werkzeug").filters if isinstance(f, WerkzeugRedaction)]
    assert len(filters) == 1
    record = werkzeug_record("GET /ws?access_token=abc HTTP/1.1")
    assert logging.getLogger("werkzeug").filter(record)
    assert "abc" not in record.getMessage()
