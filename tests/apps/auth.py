"""Authentication patterns, served by gunicorn (and `flask run`) in tests/test_e2e_auth.py.

- ``POST /login`` (form ``user``) logs in with Flask-Login and sets Flask's ``session["user"]``: a session cookie.
- ``/ws/session`` reads Flask's ``session``; ``/ws/login`` is ``@login_required`` and reads ``current_user``;
  ``/ws/admin`` answers 403 to a user who is not an admin. Each refuses with ``abort()`` before accept.
- ``POST /token`` (logged in; form ``ttl``) issues a signed token with an ``exp``; ``/ws/token`` takes it from the
  ``Authorization`` header, the ``bearer.`` subprotocol or ``?access_token=``, accepts with the client's real
  subprotocol and closes the connection when the token expires (``ws.close_at``); a message ``refresh <token>``
  replaces the deadline with the new token's.
- ``POST /revoke/<user>`` (admins only) closes every connection of the user on every worker (``disconnect_user``).
- ``/page`` is a blank page on the server's own origin, for the browser test.

Every accepted connection sends ``{"user", "via", "subprotocol", "pid", ...}`` first, then echoes.
Set ``AUTH_APP_WERKZEUG_LOG`` to a file to have Werkzeug's request log (under ``flask run``) written there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from flask import Flask, Response, abort, request, session
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user  # type: ignore[import-untyped]
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.exceptions import HTTPException

from wsgi_ws import WebSocket, bearer_token
from wsgi_ws.flask_ext import WebSockets
from wsgi_ws.hub import current_hub
from wsgi_ws.integrations.auth import offered_subprotocols

#: Code and reason of a revoked user's connections.
REVOKED = (1008, "access revoked")
#: The users, and whether each is an admin.
USERS = {"alice": False, "bob": False, "root": True}

app = Flask(__name__)
app.secret_key = "the same on every server of a test, so that one cookie works on all"
sockets = WebSockets(app)
login_manager = LoginManager(app)
signer = URLSafeSerializer(app.secret_key, salt="websocket token")

if os.environ.get("AUTH_APP_WERKZEUG_LOG"):  # Werkzeug's request log, which `flask run` writes to stderr, to a file
    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_log.setLevel(logging.INFO)
    werkzeug_log.addHandler(logging.FileHandler(os.environ["AUTH_APP_WERKZEUG_LOG"]))


class User(UserMixin):  # type: ignore[misc]  # Flask-Login is untyped
    def __init__(self, name: str) -> None:
        self.id = name
        self.admin = USERS[name]


@login_manager.user_loader  # type: ignore[untyped-decorator]
def load_user(user_id: str) -> User | None:
    return User(user_id) if user_id in USERS else None


@app.post("/login")
def login() -> Response:
    name = request.form.get("user", "")
    if name not in USERS:
        abort(403)
    login_user(User(name))
    session["user"] = name
    return Response(status=204)


@app.post("/token")
@login_required  # type: ignore[untyped-decorator]
def token() -> Response:
    claims = {"user": current_user.id, "exp": time.time() + float(request.form.get("ttl", "60"))}
    return Response(json.dumps({"token": signer.dumps(claims), "exp": claims["exp"]}), content_type="application/json")


@app.post("/revoke/<user>")
@login_required  # type: ignore[untyped-decorator]
def revoke(user: str) -> Response:
    if not current_user.admin:
        abort(403)
    workers = current_hub().disconnect_user(user, *REVOKED)
    return Response(json.dumps({"workers": workers}), content_type="application/json")


@app.get("/page")
def page() -> str:
    return "<!doctype html><title>auth</title><p>auth test page</p>"


def welcome(ws: WebSocket, user: str, via: str, **facts: Any) -> None:
    """Accepted: name the user (reachable by ``disconnect_user`` on every worker), say hello, echo."""
    current_hub().identify(ws, user)
    ws.send(json.dumps({"user": user, "via": via, "subprotocol": ws.subprotocol, "pid": os.getpid(), **facts}))
    for message in ws:
        ws.send(message)


@sockets.route("/ws/session")
def by_session(ws: WebSocket) -> None:
    user = session.get("user")
    if user is None:
        abort(401)  # before accept: the client gets exactly this HTTP answer
    ws.accept()
    welcome(ws, user, "session")


@sockets.route("/ws/login")
@login_required  # type: ignore[untyped-decorator]  # answers 401 before the handler runs
def by_login(ws: WebSocket) -> None:
    welcome(ws, current_user.id, "flask-login")


@sockets.route("/ws/admin")
@login_required  # type: ignore[untyped-decorator]
def admin(ws: WebSocket) -> None:
    if not current_user.admin:
        abort(403)
    welcome(ws, current_user.id, "flask-login", admin=True)


def verified(token: str | None) -> dict[str, Any]:
    """The token's claims; 401 when it is missing, forged or expired."""
    if token is None:
        abort(401)
    try:
        claims: dict[str, Any] = signer.loads(token)
    except BadSignature:
        abort(401)
    if claims["exp"] <= time.time():
        abort(401)
    return claims


@sockets.route("/ws/token")
def by_token(ws: WebSocket) -> None:
    token = bearer_token(ws)
    claims = verified(token)
    ws.close_at(claims["exp"])  # before accept: armed once accepted
    real = offered_subprotocols(ws)
    ws.accept(subprotocol=real[0] if real else None)  # never the bearer.<token> one
    via = "header" if "HTTP_AUTHORIZATION" in ws.environ else "query" if request.args.get("access_token") else "subprotocol"
    current_hub().identify(ws, claims["user"])
    ws.send(
        json.dumps(
            {
                "user": claims["user"],
                "via": via,
                "subprotocol": ws.subprotocol,
                "pid": os.getpid(),
                "args_see_the_token": request.args.get("access_token") == token,
            }
        )
    )
    for message in ws:
        if isinstance(message, str) and message.startswith("refresh "):
            try:
                fresh = verified(message.removeprefix("refresh "))
            except HTTPException:
                ws.close(1008, "invalid token")
                return
            ws.close_at(fresh["exp"])  # replaces the deadline
            ws.send("refreshed")
        else:
            ws.send(message)
