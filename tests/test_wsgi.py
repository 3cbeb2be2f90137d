"""The WSGI glue, without a server: every answer it gives is a valid WSGI response (wsgiref.validate)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from wsgi_ws.integrations.wsgi import HTTPErrorApp, check_origin, inline_callable, prepare
from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.handshake import HandshakeRequest

pytestmark = pytest.mark.unit


def environ(**headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/ws",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
    }
    env["wsgi.input"] = io.BytesIO()
    setup_testing_defaults(env)
    env.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    return env


UPGRADE = {"upgrade": "websocket", "connection": "Upgrade", "sec_websocket_key": "dGhlIHNhbXBsZSBub25jZQ==", "sec_websocket_version": "13"}


def run(app: HTTPErrorApp, env: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.update(status=status, headers=headers)
        return lambda data: None

    body: Iterable[bytes] = validator(app)(env, start_response)
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return seen["status"], seen["headers"], data


def test_an_ordinary_request_is_left_to_the_app() -> None:
    assert prepare(environ(), WebSocketOptions()) is None


def test_a_valid_upgrade_gives_the_request() -> None:
    prepared = prepare(environ(**UPGRADE), WebSocketOptions())
    assert isinstance(prepared, HandshakeRequest) and prepared.key == UPGRADE["sec_websocket_key"]


@pytest.mark.parametrize(
    ("headers", "status", "extra"),
    [
        ({**UPGRADE, "sec_websocket_version": "8"}, "426 Upgrade Required", ("Sec-WebSocket-Version", "13")),
        ({**UPGRADE, "sec_websocket_key": "short"}, "400 Bad Request", None),
        ({**UPGRADE, "origin": "https://evil.example"}, "403 Forbidden", None),
    ],
)
def test_a_refused_upgrade_is_a_valid_wsgi_answer(
    headers: dict[str, str], status: str, extra: tuple[str, str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    options = WebSocketOptions(allowed_origins=("https://app.example",))
    with caplog.at_level(logging.INFO, logger="wsgi_ws"):
        refusal = prepare(environ(**headers), options)
    assert isinstance(refusal, HTTPErrorApp)
    got_status, got_headers, body = run(refusal, environ(**headers))
    assert got_status == status and body.decode().startswith(status.split()[0])
    assert ("Content-Type", "text/plain; charset=utf-8") in got_headers
    if extra is not None:
        assert extra in got_headers
    assert "ws.refuse path=/ws" in caplog.text


def test_a_route_or_middleware_policy_is_checked_on_its_own() -> None:
    narrow = WebSocketOptions(allowed_origins=("https://app.example",))
    assert check_origin(environ(origin="https://app.example"), narrow) is None
    refused = check_origin(environ(origin="https://other.example"), narrow)
    assert refused is not None and refused.status == 403
    required = check_origin(environ(), WebSocketOptions(require_origin=True))
    assert required is not None and "Origin header is required" in required.reason


def test_inline_callable_gives_the_bound_call_of_an_instance() -> None:
    class App:
        def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
            return [b"ok"]

    app = App()
    call = inline_callable(app)
    assert call is not app and call.__self__ is app  # type: ignore[attr-defined]
    assert inline_callable(len) is len
