"""The Flask extension without a server: route options checked at import, blueprints, the 400 for plain HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask

from wsgi_ws import WebSocket
from wsgi_ws.exceptions import InvalidOption
from wsgi_ws.flask_ext import WebSockets
from wsgi_ws.integrations.flask_ext import RouteOptions
from wsgi_ws.options import WebSocketOptions

pytestmark = pytest.mark.unit


def echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


def test_a_plain_get_to_a_websocket_route_is_400_with_a_reason() -> None:
    app = Flask(__name__)
    WebSockets(app).route("/ws")(echo)
    response = app.test_client().get("/ws")
    assert response.status_code == 400 and b"WebSocket endpoint" in response.data


def test_route_options_are_parsed_and_applied_on_top_of_the_servers() -> None:
    route = RouteOptions("/upload", {"max_message_size": "64MiB", "keep_alive_interval": "10"})
    assert route.changes == {"max_message_size": 64 * 1024 * 1024, "keep_alive_interval": 10.0}
    base = WebSocketOptions(close_timeout=2.0)
    applied = route.apply(base)
    assert (applied.max_message_size, applied.keep_alive_interval, applied.close_timeout) == (64 << 20, 10.0, 2.0)
    assert route.apply(base) is applied, "resolved once per base"
    assert route.apply(WebSocketOptions()).close_timeout == 5.0
    assert not route.checks_origin and RouteOptions("/x", {"allowed_origins": ["https://a.example"]}).checks_origin
    dashboard = RouteOptions("/ticker", {"hub_overflow": "latest", "hub_queue_limit": "10"}).apply(base)
    assert (dashboard.hub_overflow, dashboard.hub_queue_limit) == ("latest", 10), "the hub's bounds and policy may differ per route"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_message_size": "lots"}, "route /upload: max_message_size: cannot read 'lots'"),
        ({"keep_alive_interval": -1}, "route /upload: keep_alive_interval"),
        ({"handshake_timeout": 5}, "route /upload: handshake_timeout: is a per-server setting"),
        ({"hub_url": "redis://127.0.0.1:6379/0"}, "route /upload: hub_url: is a per-server setting"),
        ({"hub_cluster": True}, "route /upload: hub_cluster: is a per-server setting"),
        ({"hub_overflow": "sometimes"}, "route /upload: hub_overflow: expected one of close, drop-oldest, latest"),
    ],
)
def test_a_bad_route_option_fails_when_the_route_is_declared(settings: dict[str, Any], message: str) -> None:
    sockets = WebSockets(Flask(__name__))
    with pytest.raises(InvalidOption) as caught:
        sockets.route("/upload", **settings)
    assert message in str(caught.value)


def test_other_keywords_go_to_flask() -> None:
    app = Flask(__name__)
    WebSockets(app).route("/room/<name>", endpoint="room", defaults={"name": "lobby"}, max_message_size=1000)(echo)
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint == "room"]
    assert len(rules) == 2 and {rule.rule for rule in rules} == {"/room/<name>"}  # the WebSocket rule and its plain twin
    assert all(rule.defaults == {"name": "lobby"} for rule in rules)
    assert any(rule.websocket for rule in rules) and any(not rule.websocket for rule in rules)


def test_routes_on_a_blueprint_are_served_where_it_is_registered() -> None:
    app = Flask(__name__)
    sockets = WebSockets(app)
    bp = Blueprint("rooms", __name__)
    sockets.route("/echo", bp=bp)(echo)
    app.register_blueprint(bp, url_prefix="/rooms")
    rules = {(rule.rule, rule.websocket) for rule in app.url_map.iter_rules() if rule.endpoint == "rooms.echo"}
    assert rules == {("/rooms/echo", True), ("/rooms/echo", False)}
    assert app.test_client().get("/rooms/echo").status_code == 400


def test_routes_declared_before_init_app_are_registered_by_it() -> None:
    sockets = WebSockets()
    sockets.route("/later", keep_alive_interval=3)(echo)
    app = Flask(__name__)
    sockets.init_app(app)
    assert {rule.rule for rule in app.url_map.iter_rules()} >= {"/later"}
