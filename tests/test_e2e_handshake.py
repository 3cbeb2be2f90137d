"""End to end: the opening handshake's refusals, exact statuses, and deferred accept."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.wsclient import OP_TEXT, RawClient, upgrade_request

pytestmark = pytest.mark.e2e


def test_plain_http_get_to_websocket_route_gets_400_with_reason(echo_server: GunicornServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{echo_server.http_url}/ws", timeout=TIMEOUT)
    assert caught.value.code == 400
    assert b"WebSocket endpoint" in caught.value.read()


def test_index_page_is_served(echo_server: GunicornServer) -> None:
    with urllib.request.urlopen(f"{echo_server.http_url}/", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert b"<html" in response.read()


BAD_REQUESTS = [
    ("missing version", upgrade_request(omit=("Sec-WebSocket-Version",)), 426),
    ("version 8", upgrade_request(headers={"Sec-WebSocket-Version": "8"}), 426),
    ("version 14", upgrade_request(headers={"Sec-WebSocket-Version": "14"}), 426),
    ("version garbage", upgrade_request(headers={"Sec-WebSocket-Version": "13, 8"}), 426),
    ("missing key", upgrade_request(omit=("Sec-WebSocket-Key",)), 400),
    ("key of 15 bytes", upgrade_request(headers={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}), 400),
    ("key of 17 bytes", upgrade_request(headers={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAA="}), 400),
    ("key not base64", upgrade_request(headers={"Sec-WebSocket-Key": "not base64 at all!!!!!=="}), 400),
    ("missing Connection: Upgrade", upgrade_request(omit=("Connection",)), 400),
    ("Connection: keep-alive only", upgrade_request(headers={"Connection": "keep-alive"}), 400),
    ("POST", upgrade_request().replace(b"GET ", b"POST ", 1), 400),
    ("HTTP/1.0", upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 400),
]


@pytest.mark.parametrize(("name", "request_bytes", "status"), BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_handshake_gets_exact_status_never_101_or_500(
    echo_server: GunicornServer, name: str, request_bytes: bytes, status: int
) -> None:
    with RawClient(echo_server.port) as client:
        client.send(request_bytes)
        response = client.read_response()
        assert response.status == status
        assert response.body.startswith(f"{status} ".encode()) and len(response.body) > 20
        if status == 426:
            assert response.headers["sec-websocket-version"] == "13"
        client.expect_eof()


def test_key_with_comma_joined_duplicates_is_refused(echo_server: GunicornServer) -> None:
    request = upgrade_request().replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    with RawClient(echo_server.port) as client:
        client.send(request)
        assert client.read_response().status == 400


def test_accept_key_matches_rfc_example(echo_server: GunicornServer) -> None:
    with RawClient(echo_server.port) as client:
        response = client.handshake(headers={"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert response.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert response.headers["upgrade"].lower() == "websocket"
        assert response.headers["connection"].lower() == "upgrade"


def test_app_can_refuse_with_http_before_accept(test_app_server: GunicornServer) -> None:
    with RawClient(test_app_server.port) as client:
        client.send(upgrade_request("/deny"))
        response = client.read_response()
        assert response.status == 403
        assert response.body == b"no entry\n"
        assert response.headers["x-reason"] == "test"


def test_http_exception_before_accept_reaches_client(test_app_server: GunicornServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{test_app_server.url}/missing", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 404


def test_error_before_accept_is_http_500(test_app_server: GunicornServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{test_app_server.url}/raise-before", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 500


def test_unknown_path_with_valid_upgrade_is_404(test_app_server: GunicornServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{test_app_server.url}/nowhere", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 404


def test_subprotocol_is_chosen_by_server_preference_among_offered(test_app_server: GunicornServer) -> None:
    with connect(f"{test_app_server.url}/subprotocol", subprotocols=["chat.v1", "chat.v2"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=TIMEOUT) == "subprotocol=chat.v2"


def test_no_subprotocol_when_none_offered_matches(test_app_server: GunicornServer) -> None:
    with connect(f"{test_app_server.url}/subprotocol", subprotocols=["other"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None
        assert ws.recv(timeout=TIMEOUT) == "subprotocol=None"


def test_app_may_accept_explicitly_with_a_subprotocol(test_app_server: GunicornServer) -> None:
    with connect(f"{test_app_server.url}/explicit-accept", subprotocols=["a", "b"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "b"
        assert ws.recv(timeout=TIMEOUT) == "subprotocol=b"


def test_frames_pipelined_with_the_request_are_not_lost(echo_server: GunicornServer) -> None:
    from tests.wsclient import encode_frame

    with RawClient(echo_server.port) as client:
        client.send(upgrade_request() + encode_frame(OP_TEXT, b"early bird"))
        assert client.read_response().status == 101
        assert client.read_message() == (OP_TEXT, b"early bird")


def test_handler_returning_without_accepting_closes_normally(test_app_server: GunicornServer) -> None:
    with RawClient(test_app_server.port) as client:
        client.handshake("/return-none")
        assert client.expect_close(reply=True).close_code == 1000
