"""Failed TLS handshakes: a line at most every INTERVAL seconds, with how many were left out, and all counted."""

from __future__ import annotations

import logging
import ssl

import pytest

from wsgi_ws.integrations.tls_failures import TLSFailures

pytestmark = pytest.mark.unit


def test_the_first_failure_of_each_interval_is_logged_and_the_rest_counted(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    failures = TLSFailures(clock=lambda: now[0], interval=10.0)
    error = ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request")
    error.reason = "HTTP_REQUEST"
    with caplog.at_level(logging.WARNING, logger="wsgi_ws"):
        for port in range(5):
            failures.note(("127.0.0.1", 40000 + port), error)
        now[0] += 10.0
        failures.note(("127.0.0.1", 40009), ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "tls: handshake with 127.0.0.1:40000 failed (SSLError: HTTP_REQUEST)",
        "tls: handshake with 127.0.0.1:40009 failed (SSLEOFError: SSLEOFError); 4 more failed since the last such line",
    ]
    assert failures.count == 6
