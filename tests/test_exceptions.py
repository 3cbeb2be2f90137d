"""The one exception tree: its shape, gevent-websocket's base, and the errors the layers below turn into."""

from __future__ import annotations

import pytest
from geventwebsocket.exceptions import WebSocketError as GeventWebSocketError
from websockets.frames import Close, CloseCode

from wsgi_ws import exceptions
from wsgi_ws.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidArgument,
    InvalidOption,
    InvalidState,
    WebSocketError,
    from_protocol,
)
from wsgi_ws.protocol.errors import HandshakeRefused, ProtocolError, SessionClosed, UsageError
from wsgi_ws.protocol.state import ConnectionState, Event, InvalidTransition

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", exceptions.__all__[:-1])  # every class; from_protocol is last
def test_every_error_is_a_gevent_websocket_error(name: str) -> None:
    error_class = getattr(exceptions, name)
    assert issubclass(error_class, WebSocketError) and issubclass(error_class, GeventWebSocketError)


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    assert exceptions.__doc__ is not None
    for name in exceptions.__all__[:-1]:
        assert name in exceptions.__doc__, name


OK_OR_ERROR = [(1000, ConnectionClosedOK), (1001, ConnectionClosedOK), (1005, ConnectionClosedOK)] + [
    (code, ConnectionClosedError) for code in (1002, 1006, 1011, 1013, 4000)
]


@pytest.mark.parametrize(("code", "kind"), OK_OR_ERROR)
def test_connection_closed_of_picks_ok_or_error_by_code(code: int, kind: type[ConnectionClosed]) -> None:
    error = ConnectionClosed.of(code, "why")
    assert type(error) is kind and (error.close_code, error.close_reason) == (code, "why")
    assert str(code) in str(error) and "why" in str(error)


def test_close_code_is_a_plain_int_even_from_a_close_code_member() -> None:
    """An IntEnum's str() is its name before Python 3.11: a handler logging exc.close_code must see 1006 on every version."""
    error = ConnectionClosed.of(CloseCode.ABNORMAL_CLOSURE, "gone")
    assert type(error) is ConnectionClosedError and type(error.close_code) is int and str(error.close_code) == "1006"
    assert "code 1006" in str(error)


def test_misuse_errors_are_also_value_errors_where_python_would_say_so() -> None:
    assert issubclass(InvalidArgument, ValueError) and issubclass(InvalidOption, ValueError)
    assert not issubclass(InvalidState, ValueError)


def test_from_protocol_turns_each_error_of_the_sans_io_layer_into_its_counterpart() -> None:
    rcvd, sent = Close(1000, "bye"), Close(1000, "bye")
    closed = from_protocol(SessionClosed(1000, "bye", rcvd, sent))
    assert isinstance(closed, ConnectionClosedOK) and closed.rcvd is rcvd and closed.sent is sent
    refused = from_protocol(HandshakeRefused(426, "version", (("Sec-WebSocket-Version", "13"),)))
    assert isinstance(refused, HandshakeError) and (refused.status, refused.reason) == (426, "version")
    assert refused.headers == (("Sec-WebSocket-Version", "13"),)
    assert isinstance(from_protocol(UsageError("bad code")), InvalidArgument)
    assert isinstance(from_protocol(InvalidTransition(ConnectionState.OPEN, Event.ACCEPT)), InvalidState)
    assert type(from_protocol(ProtocolError("other"))) is WebSocketError


def test_invalid_option_names_the_setting() -> None:
    error = InvalidOption("WS_KEEP_ALIVE_INTERVAL", "cannot read 'soon'")
    assert error.setting == "WS_KEEP_ALIVE_INTERVAL" and str(error).startswith("invalid WebSocket setting WS_KEEP_ALIVE_INTERVAL")
