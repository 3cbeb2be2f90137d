"""send_json / receive_json against a real gunicorn: values both ways, null is not the end, invalid JSON closes 1007."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_values_go_both_ways_text_or_binary_and_null_is_a_value(test_app_server: GunicornServer) -> None:
    with connect(f"{test_app_server.url}/json", open_timeout=TIMEOUT) as ws:
        for value in ({"a": [1, 2.5, "ü"]}, None, 0, "plain"):
            ws.send(json.dumps(value))
            answer = ws.recv(timeout=TIMEOUT)
            assert isinstance(answer, str) and json.loads(answer)["got"] == value
        ws.send(json.dumps({"ü": 1}).encode())  # binary frames carry JSON too
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"got": {"ü": 1}, "type": "dict"}
        ws.send(json.dumps("as binary"))
        reply = ws.recv(timeout=TIMEOUT)
        assert reply == b'{"got":"as binary","type":"str"}', reply


def test_a_message_that_is_not_json_closes_with_1007_and_a_reason(test_app_server: GunicornServer) -> None:
    with connect(f"{test_app_server.url}/json", open_timeout=TIMEOUT) as ws:
        ws.send("{not json")
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(timeout=TIMEOUT)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1007
    assert caught.value.rcvd.reason.startswith("invalid JSON: ")
    wait_until(lambda: "ws.close path=/json" in test_app_server.log(), "no ws.close for /json")
    assert "Traceback" not in test_app_server.log()
