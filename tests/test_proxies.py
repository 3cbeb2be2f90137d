"""Trusted proxies: the client IP and the request's own origins, believed from X-Forwarded-* only when trusted."""

from __future__ import annotations

from typing import Any

import pytest

from wsgi_ws.integrations.proxies import ENVIRON_KEY, TrustedProxies, client_ip, own_origins

pytestmark = pytest.mark.unit

LOCAL = TrustedProxies.from_gunicorn(type("Cfg", (), {"forwarded_allow_ips": ["127.0.0.1", "10.0.0.0/8"]})())


def environ(peer: str = "127.0.0.1", proxies: TrustedProxies | None = LOCAL, **headers: str) -> dict[str, Any]:
    made: dict[str, Any] = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1:5000", **headers}
    if proxies is not None:
        made[ENVIRON_KEY] = proxies
    return made


def test_the_client_ip_is_the_nearest_untrusted_hop_from_a_trusted_proxy() -> None:
    assert client_ip(environ(HTTP_X_FORWARDED_FOR="203.0.113.9, 10.1.2.3")) == "203.0.113.9"
    assert client_ip(environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")) == "203.0.113.9"  # a spoofed left end
    assert client_ip(environ(HTTP_X_FORWARDED_FOR="10.0.0.1, 10.0.0.2")) == "10.0.0.1"  # all trusted: the first
    assert client_ip(environ()) == "127.0.0.1"


def test_forwarded_headers_from_an_untrusted_peer_or_without_proxies_are_ignored() -> None:
    assert client_ip(environ("198.51.100.7", HTTP_X_FORWARDED_FOR="1.2.3.4")) == "198.51.100.7"
    assert client_ip(environ(proxies=None, HTTP_X_FORWARDED_FOR="1.2.3.4")) == "127.0.0.1"
    spoofed = environ("198.51.100.7", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="app.example")
    assert own_origins(spoofed) == ["http://127.0.0.1:5000"]


def test_own_origins_add_the_proxys_view_from_a_trusted_proxy() -> None:
    forwarded = environ(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="App.Example:443, inner")
    assert own_origins(forwarded) == ["http://127.0.0.1:5000", "https://app.example"]
    with_port = environ(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="app.example", HTTP_X_FORWARDED_PORT="8443")
    assert own_origins(with_port) == ["http://127.0.0.1:5000", "https://app.example:8443"]


def test_star_and_unix_socket_peers() -> None:
    everyone = TrustedProxies(["*"])
    assert everyone.trusts("203.0.113.1") and everyone.trusts("::1")
    assert LOCAL.trusts("")  # gunicorn trusts a Unix socket's peer
    assert not TrustedProxies(["127.0.0.1"]).trusts("") and not TrustedProxies(["not-an-ip"])
