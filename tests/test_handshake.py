"""The handshake's validation, without sockets: one row per refusal, in the documented order."""

from __future__ import annotations

from typing import Any

import pytest

from wsgi_ws.integrations.wsgi import inline_callable
from wsgi_ws.protocol.errors import HandshakeRefused
from wsgi_ws.protocol.handshake import accept_response, is_upgrade_request, validate_request
from wsgi_ws.protocol.origins import OriginPolicy

pytestmark = pytest.mark.unit

ALL = OriginPolicy(("*",))


def environ(**changes: Any) -> dict[str, Any]:
    base = {
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "keep-alive, Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def test_valid_request() -> None:
    request = validate_request(environ(HTTP_SEC_WEBSOCKET_PROTOCOL="a, b", HTTP_ORIGIN="https://x.org"), ALL)
    assert request.subprotocols == ("a", "b") and request.origin == "https://x.org"
    assert request.select_subprotocol(("b", "a")) == "b"
    assert request.select_subprotocol(("c",)) is None


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"REQUEST_METHOD": "POST"}, 400),
        ({"SERVER_PROTOCOL": "HTTP/1.0"}, 400),
        ({"HTTP_HOST": None}, 400),
        ({"HTTP_CONNECTION": "close"}, 400),
        ({"HTTP_CONNECTION": "upgraded"}, 400),
        ({"SERVER_PROTOCOL": "HTTP/0.9"}, 400),
        ({"SERVER_PROTOCOL": "SPDY/3"}, 400),
        ({"HTTP_SEC_WEBSOCKET_VERSION": None}, 426),
        ({"HTTP_SEC_WEBSOCKET_VERSION": "8"}, 426),
        ({"HTTP_SEC_WEBSOCKET_KEY": None}, 400),
        ({"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, 400),
        ({"HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="}, 400),
        ({"HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ"}, 400),
    ],
)
def test_refusals(changes: dict[str, Any], status: int) -> None:
    with pytest.raises(HandshakeRefused) as caught:
        validate_request(environ(**changes), ALL)
    assert caught.value.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in caught.value.headers


@pytest.mark.parametrize(("protocol", "connection"), [("HTTP/1.1", "Upgrade"), ("HTTP/2.0", "upgrade"), ("HTTP/1.10", "close,UPGRADE")])
def test_accepted_versions_and_connection_headers(protocol: str, connection: str) -> None:
    assert validate_request(environ(SERVER_PROTOCOL=protocol, HTTP_CONNECTION=connection), ALL).subprotocols == ()


def test_origin_refusal_is_403() -> None:
    with pytest.raises(HandshakeRefused) as caught:
        validate_request(environ(HTTP_ORIGIN="https://evil.net"), OriginPolicy(("https://good.net",)))
    assert caught.value.status == 403 and "evil.net" in caught.value.reason


@pytest.mark.parametrize(
    ("upgrade", "expected"),
    [
        ("websocket", True),
        ("WebSocket", True),
        ("h2c, websocket", True),
        (" websocket ", True),
        ("h2c", False),
        ("websocketx", False),
        ("", False),
        (None, False),
    ],
)
def test_is_upgrade_request(upgrade: str | None, expected: bool) -> None:
    assert is_upgrade_request(environ(HTTP_UPGRADE=upgrade)) is expected


def test_accept_response_bytes() -> None:
    response = accept_response("dGhlIHNhbXBsZSBub25jZQ==", "chat", (("X-A", "1"),))
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nX-A: 1\r\n\r\n"
    )


def test_accept_response_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        accept_response("dGhlIHNhbXBsZSBub25jZQ==", None, (("X-A", "1\r\nSet-Cookie: x"),))


def test_inline_callable_calls_an_instance_through_its_bound_call() -> None:
    class App:
        def __call__(self, environ: dict[str, str], start_response: object) -> list[bytes]:
            return [environ["x"].encode()]

    app = App()
    call = inline_callable(app)
    assert call.__self__ is app and call.__func__ is App.__call__  # type: ignore[attr-defined]
    assert call({"x": "y"}, None) == [b"y"]

    def plain(environ: dict[str, str], start_response: object) -> list[bytes]:
        return []

    assert inline_callable(plain) is plain
    assert inline_callable(print) is print  # a builtin is called as it is
