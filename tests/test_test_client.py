"""wsgi_ws.testing.TestClient: a user's handlers run in this process over a socketpair, through the library's real code."""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, abort, request
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

import wsgi_ws.options
from tests.apps.gws_style import app as gws_app
from tests.constants import TIMEOUT
from tests.server import ROOT
from wsgi_ws import WebSocket, configure
from wsgi_ws.flask_ext import WebSockets
from wsgi_ws.hub import current_hub
from wsgi_ws.middleware import WebSocketMiddleware
from wsgi_ws.testing import TestClient, TestConnection
from wsgi_ws.testing.wsgi_server import BaseURL

pytestmark = [pytest.mark.socket, pytest.mark.timeout(30)]

app = Flask(__name__)
sockets = WebSockets(app)
#: What handlers saw, by test: written in the handler's thread, read by the test once the connection is over.
seen: dict[str, Any] = {}
release = threading.Event()


@sockets.route("/echo")
def echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


@sockets.route("/chat", subprotocols=["chat.v2", "chat.v1"])
def chat(ws: WebSocket) -> None:
    ws.send(f"speaking {ws.subprotocol}")
    seen["chat"] = ws.receive()


@sockets.route("/private")
def private(ws: WebSocket) -> None:
    if request.headers.get("Authorization") != "Bearer good":
        abort(401, "a token, please")
    ws.send("welcome")
    ws.receive()


@sockets.route("/boom")
def boom(ws: WebSocket) -> None:
    ws.receive()
    raise ValueError("the handler broke")


@sockets.route("/small", max_message_size=16)
def small(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)
    seen["small"] = ws.close_code


@sockets.route("/bye")
def bye(ws: WebSocket) -> None:
    ws.receive()
    ws.close(4000, "bye now")
    seen["bye"] = (ws.close_code, ws.close_reason)


@sockets.route("/listen")
def listen(ws: WebSocket) -> None:
    while ws.receive() is not None:
        pass
    time.sleep(0.05)  # the handler's last steps: the test sees them, it does not race them
    seen["listen"] = (ws.close_code, ws.close_reason)


@sockets.route("/facts/<name>")
def facts(ws: WebSocket, name: str) -> None:
    ws.send_json(
        {
            "name": name,
            "query": request.args.to_dict(),
            "header": request.headers.get("X-Test"),
            "cookies": request.cookies.to_dict(),
            "host": request.host,
            "peer": ws.peer,
            "origin": ws.origin,
            "scheme": request.scheme,
        }
    )
    ws.receive()


@sockets.route("/stuck")
def stuck(ws: WebSocket) -> None:
    ws.accept()
    release.wait(TIMEOUT)


@sockets.route("/room")
def room(ws: WebSocket) -> None:
    hub = current_hub()
    hub.join(ws, "test-client-room")
    ws.send("joined")
    for message in ws:
        hub.publish("test-client-room", message)


@sockets.route("/deflate", compression=True)
def deflate(ws: WebSocket) -> None:
    ws.accept()  # negotiated with it
    ws.send("compressed" if ws.compressed else "plain")
    ws.receive()


@pytest.fixture(autouse=True)
def forget() -> None:
    seen.clear()


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app) as made:
        yield made


def test_text_and_binary_echo_and_the_log_lines_are_there_once_the_block_ends(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wsgi_ws")
    with client.connect("/echo") as ws:
        assert isinstance(ws, TestConnection)
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff"
    lines = [record.getMessage() for record in caplog.records if record.name == "wsgi_ws"]
    assert any(line.startswith("ws.accept path=/echo peer=127.0.0.1:") for line in lines), lines
    (close,) = [line for line in lines if line.startswith("ws.close path=/echo")]
    assert "code=1000" in close and "messages_in=2 messages_out=2" in close


def test_the_subprotocol_is_negotiated_by_the_routes_option(client: TestClient) -> None:
    with client.connect("/chat", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2", "the server's order of preference"
        assert ws.recv(timeout=TIMEOUT) == "speaking chat.v2"
        ws.send("ok")
    assert seen["chat"] == "ok"


def test_compression_is_negotiated_by_the_routes_option(client: TestClient) -> None:
    with client.connect("/deflate") as ws:  # websockets offers permessage-deflate by default
        assert ws.recv(timeout=TIMEOUT) == "compressed"
        assert ws.response is not None and "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
    with client.connect("/deflate", compression=None) as ws:
        assert ws.recv(timeout=TIMEOUT) == "plain"
    with client.connect("/echo") as ws:
        assert ws.response is not None and ws.response.headers.get("Sec-WebSocket-Extensions") is None, "off by default"


def test_same_origin_by_default_and_403_for_another_origin_before_the_app_runs(client: TestClient) -> None:
    assert client.origin == "http://localhost"
    with client.connect("/echo", origin=client.origin) as ws:
        ws.send("mine")
        assert ws.recv(timeout=TIMEOUT) == "mine"
    with pytest.raises(InvalidStatus) as caught:
        client.connect("/facts/x", origin="https://evil.example")
    response = caught.value.response
    assert response.status_code == 403
    assert b"origin 'https://evil.example' is not this server's (http://localhost)" in response.body
    assert client.served[-1].status is not None and client.served[-1].status.startswith("403")
    assert "facts" not in seen


def test_a_base_url_of_its_own_is_the_apps_own_origin() -> None:
    with TestClient(app, base_url="https://app.example:8443") as client:
        assert client.url == "ws://app.example:8443"
        with client.connect("/facts/x", origin="https://app.example:8443") as ws:
            answer = json.loads(ws.recv(timeout=TIMEOUT))
        assert (answer["host"], answer["scheme"], answer["origin"]) == ("app.example:8443", "https", "https://app.example:8443")
        with pytest.raises(InvalidStatus) as caught:
            client.connect("/echo", origin="http://app.example:8443")
        assert caught.value.response.status_code == 403


def test_plain_http_and_a_bad_handshake_get_the_libraries_answers(client: TestClient) -> None:
    plain = client.request("/echo")
    assert plain.status == 400 and "connect with a WebSocket client" in plain.text
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    old = client.request("/echo", headers={**handshake, "Sec-WebSocket-Version": "8"})
    assert old.status == 426 and old.headers["Sec-WebSocket-Version"] == "13"
    no_key = client.request("/echo", headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"})
    assert no_key.status == 400 and "Sec-WebSocket-Key" in no_key.text
    with pytest.raises(InvalidStatus) as caught:
        client.connect("/no/such/route")
    assert caught.value.response.status_code == 404


def test_a_handlers_abort_before_accept_is_the_http_answer(client: TestClient) -> None:
    with pytest.raises(InvalidStatus) as caught:
        client.connect("/private")
    assert caught.value.response.status_code == 401
    assert b"a token, please" in caught.value.response.body
    with client.connect("/private", additional_headers={"Authorization": "Bearer good"}) as ws:
        assert ws.recv(timeout=TIMEOUT) == "welcome"


def test_a_handler_that_raises_closes_with_1011_and_its_exception_is_raised_at_the_end_of_the_block(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="the handler broke"), client.connect("/boom") as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011, "what production sends"
        assert closed.value.rcvd.reason == "internal server error"
    assert any(record.exc_info and "closing with 1011" in record.getMessage() for record in caplog.records), "the traceback is logged"


def test_with_raise_server_exceptions_off_the_client_sees_only_what_a_real_client_would() -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        with client.connect("/boom") as ws:
            ws.send("go")
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=TIMEOUT)
        assert isinstance(client.served[-1].error, ValueError), "kept for a test that asks"


def test_an_exception_before_accept_is_a_500_or_with_flask_testing_the_exception_itself() -> None:
    failing = Flask("failing")

    @WebSockets(failing).route("/early")
    def early(ws: WebSocket) -> None:
        raise KeyError("no accept")

    with TestClient(failing) as client, pytest.raises(InvalidStatus) as caught:
        client.connect("/early")
    assert caught.value.response.status_code == 500
    failing.testing = True  # Flask propagates the view's exception, as its own test client shows it
    with TestClient(failing) as client, pytest.raises(KeyError, match="no accept"):
        client.connect("/early")
    with TestClient(failing, raise_server_exceptions=False) as client, pytest.raises(InvalidStatus) as caught:
        client.connect("/early")
    assert caught.value.response.status_code == 500 and b"KeyError" in caught.value.response.body


def test_a_routes_own_max_message_size_closes_with_1009(client: TestClient) -> None:
    with client.connect("/small") as ws:
        ws.send("x" * 16)
        assert ws.recv(timeout=TIMEOUT) == "x" * 16
        ws.send("x" * 17)
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert seen["small"] == 1009


def test_the_process_options_of_configure_apply(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi_ws.options, "_explicit", {})
    monkeypatch.setattr(wsgi_ws.options, "_current", None)  # the process's options come back after the test
    configure(max_message_size=8)
    with client.connect("/echo") as ws:
        ws.send("x" * 9)
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_websocket_keys_of_the_flask_config_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi_ws.options, "_explicit", {})
    monkeypatch.setattr(wsgi_ws.options, "_current", None)
    configured = Flask("configured")
    configured.config["WEBSOCKET_MAX_MESSAGE_SIZE"] = "8"
    WebSockets(configured).route("/echo")(echo)
    with TestClient(configured) as client, client.connect("/echo") as ws:
        ws.send("x" * 8)
        assert ws.recv(timeout=TIMEOUT) == "x" * 8
        ws.send("x" * 9)
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_the_server_closes_with_a_code_and_the_client_closes_with_one(client: TestClient) -> None:
    with client.connect("/bye") as ws:
        ws.send("now")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "bye now")
    assert seen["bye"] == (4000, "bye now")
    with client.connect("/listen") as ws:
        ws.close(4001, "done here")
        assert "listen" in seen, "close() waited for the handler's last steps"
    assert seen["listen"] == (4001, "done here")
    with client.connect("/listen"):
        pass  # the end of the block closes with 1000
    assert seen["listen"] == (1000, "")


def test_headers_cookies_query_and_path_reach_the_handler(client: TestClient) -> None:
    headers = {"X-Test": "yes", "Cookie": "session=abc; theme=dark", "X_Test": "an underscore: dropped, as servers do"}
    with client.connect("/facts/ann?page=2&q=a%20b", additional_headers=headers, origin="http://localhost") as ws:
        answer = json.loads(ws.recv(timeout=TIMEOUT))
    assert answer["name"] == "ann" and answer["query"] == {"page": "2", "q": "a b"}
    assert answer["header"] == "yes" and answer["cookies"] == {"session": "abc", "theme": "dark"}
    assert answer["host"] == "localhost" and answer["origin"] == "http://localhost" and answer["scheme"] == "http"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", answer["peer"])
    environ = client.served[-1].environ
    assert environ["SERVER_NAME"] == "localhost" and environ["wsgi.multithread"] and "werkzeug.socket" in environ
    assert environ["HTTP_X_TEST"] == "yes", "X_Test did not overwrite it"


def test_a_keyword_websockets_would_ignore_is_refused(client: TestClient) -> None:
    with pytest.raises(TypeError, match=r"headers \(headers go in additional_headers=\)"):
        client.connect("/echo", headers={"X-Test": "yes"})
    with pytest.raises(TypeError, match="sock"):
        client.connect("/echo", sock=None)


def test_a_plain_wsgi_app_with_the_middleware_works_too() -> None:
    with TestClient(WebSocketMiddleware(gws_app)) as client, client.connect("/any") as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
        ws.send("close-please")
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4321


def test_a_wsgi_app_that_never_calls_start_response_is_a_500_and_its_error() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    with TestClient(broken) as client, pytest.raises(RuntimeError, match="without calling start_response"):
        client.connect("/ws")
    with TestClient(broken, raise_server_exceptions=False) as client:
        assert client.request("/").status == 500


def test_a_handler_that_never_returns_is_a_timeout_not_a_hang() -> None:
    release.clear()
    try:
        with TestClient(app, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(TimeoutError, match="still serving /stuck"), client.connect("/stuck"):
                pass
            assert time.monotonic() - started < 2.0, "the client's close and the wait for the handler are both bounded"
    finally:
        release.set()


def test_the_hub_in_memory_broadcasts_between_two_clients(client: TestClient) -> None:
    with client.connect("/room") as ann, client.connect("/room") as bob:
        assert ann.recv(timeout=TIMEOUT) == "joined" and bob.recv(timeout=TIMEOUT) == "joined"
        ann.send("hello room")
        assert ann.recv(timeout=TIMEOUT) == "hello room"
        assert bob.recv(timeout=TIMEOUT) == "hello room"


def test_connections_left_open_are_closed_by_the_client() -> None:
    with TestClient(app) as client:
        ws = client.connect("/listen")
        with ws:  # websockets wants a with block; the client's end closes what is still open
            ws.send("x")
            client.close()
            assert "listen" in seen
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=TIMEOUT)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_thread_or_socket_is_left_behind(client: TestClient) -> None:
    with client.connect("/echo") as ws:  # the middleware's keep-alive monitor starts with its first connection
        ws.send("warm")
        ws.recv(timeout=TIMEOUT)
    threads, descriptors = threading.active_count(), _open_descriptors()
    for _ in range(5):
        with client.connect("/echo") as ws:
            ws.send("x")
            assert ws.recv(timeout=TIMEOUT) == "x"
        assert ws.keepalive_thread is not None and not ws.keepalive_thread.is_alive(), "the client's threads end with close()"
        assert not ws.recv_events_thread.is_alive()
        assert threading.active_count() == threads, f"at once, not some time later: {threading.enumerate()}"
        with pytest.raises(InvalidStatus):
            client.connect("/private")
    assert client.request("/echo").status == 400
    assert threading.active_count() == threads, threading.enumerate()
    assert _open_descriptors() == descriptors


def test_one_handler_test_takes_milliseconds(client: TestClient) -> None:
    times = []
    for _ in range(30):
        started = time.perf_counter()
        with client.connect("/echo") as ws:
            ws.send("ping")
            assert ws.recv(timeout=TIMEOUT) == "ping"
        times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.05, f"median {statistics.median(times) * 1000:.1f} ms (goal: under 50 ms; typically 2-7 ms)"


def test_base_urls() -> None:
    assert BaseURL.parse("http://localhost").netloc == "localhost"
    assert BaseURL.parse("wss://a.example").ws_url == "ws://a.example"
    assert BaseURL.parse("http://[::1]:8080").netloc == "[::1]:8080"
    with pytest.raises(ValueError, match="base_url"):
        BaseURL.parse("ftp://x")


def test_the_docs_fast_client_example_runs() -> None:
    readme = (ROOT / "docs" / "testing.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "TestClient(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/testing.md", "exec"), namespace)
    tests = [function for name, function in namespace.items() if name.startswith("test_") and callable(function)]
    assert tests
    for test in tests:
        test()
