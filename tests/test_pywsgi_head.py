"""The worker's header parser gives pywsgi what the ``email``-based one gave it, and refuses malformed heads."""

from __future__ import annotations

import io

import pytest
from gevent.pywsgi import headers_factory

from wsgi_ws.integrations.pywsgi_head import MAX_HEADERS, HeadersFromEnviron, RequestHeaders, environ_headers, read_headers

pytestmark = pytest.mark.unit

HEAD = (
    b"Host: 127.0.0.1:5000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nX_Bad: dropped\r\nCookie: a=1\r\nContent-Type: text/plain\r\nX-Spaces:   padded  \r\n\r\n"
)


def pywsgi_parse(head: bytes) -> object:
    return headers_factory(io.BufferedReader(io.BytesIO(head)))


def test_fields_and_environ_entries_match_pywsgis_own_parser() -> None:
    ours, theirs = read_headers(io.BytesIO(HEAD)), pywsgi_parse(HEAD)
    assert ours.items() == list(theirs.items())  # type: ignore[attr-defined]
    assert list(ours.headers) == list(theirs.headers)  # type: ignore[attr-defined]
    assert (ours.status, ours.typeheader, ours.get("UPGRADE"), ours.getheader("nope", "d")) == ("", "text/plain", "websocket", "d")
    entries = dict(environ_headers(ours))
    assert entries["HTTP_SEC_WEBSOCKET_KEY"] == "dGhlIHNhbXBsZSBub25jZQ==" and entries["HTTP_X_SPACES"] == "padded"
    assert "HTTP_X_BAD" not in entries and "HTTP_CONTENT_TYPE" not in entries


def test_the_reader_stops_at_the_empty_line_and_leaves_the_rest() -> None:
    stream = io.BytesIO(b"Host: x\n\n\x81\x05hello")
    assert read_headers(stream).items() == [("Host", "x")]
    assert stream.read() == b"\x81\x05hello"


def test_a_folded_line_continues_the_field_and_delete_removes_every_copy() -> None:
    headers = read_headers(io.BytesIO(b"X-A: one\r\n  two\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n"))
    assert headers.get("x-a") == "one two"
    del headers["Content-Length"]
    del headers["absent"]
    assert headers.items() == [("X-A", "one two")]


@pytest.mark.parametrize(
    "head",
    [
        b"NoColon\r\n\r\n",
        b"Bad Name: x\r\n\r\n",
        b"Bad :x\r\n\r\n",
        b": empty name\r\n\r\n",
        b" leading fold\r\n\r\n",
        b"X: " + b"a" * 70000 + b"\r\n\r\n",
        b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADERS + 1)) + b"\r\n",
    ],
)
def test_malformed_heads_get_a_status_pywsgi_answers_with_400(head: bytes) -> None:
    assert read_headers(io.BytesIO(head)).status != ""


def test_stand_ins_after_the_upgrade() -> None:
    environ = {"HTTP_USER_AGENT": "probe", "PATH_INFO": "/ws"}
    assert HeadersFromEnviron(environ).get("User-Agent") == "probe"
    assert HeadersFromEnviron(environ).items() == [("User-Agent", "probe")]
    assert RequestHeaders().items() == []
