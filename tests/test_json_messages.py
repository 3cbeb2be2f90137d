"""send_json / receive_json against a real gunicorn: values both ways, null is not the end, invalid JSON closes 1007."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from tests.constants import TIMEOUT
from tests.server import GunicornServer
from tests.waiting import wait_until
from tests.wsclient import closed_by_server_after

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
    seen = len(test_app_server.log())  # the server is shared: judge only what this test made it write
    code, reason = closed_by_server_after(f"{test_app_server.url}/json", "{not json")
    assert code == 1007 and reason.startswith("invalid JSON: "), (code, reason)
    # This connection's ws.close line (1007): an earlier test's /json connection may log its own close after `seen`.
    wait_until(
        lambda: any("ws.close path=/json" in line and " code=1007 " in line for line in test_app_server.log()[seen:].splitlines()),
        "no ws.close with 1007 for /json",
    )
    log = test_app_server.log()[seen:]
    assert "Traceback" not in log and "ended on a closed connection (InvalidMessage: invalid JSON: " in log, log
