"""Trusted proxies: whose ``X-Forwarded-*`` headers say who the client is and which URL it used.

A proxy such as nginx connects to the server itself, so the peer address is the proxy's and the request's scheme and
``Host`` may be the proxy's view rather than the browser's. It says what the client used in ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Port``; anyone can send those headers, so they are
believed only from the peers gunicorn's ``forwarded_allow_ips`` names (addresses, networks, or ``*``; by default
gunicorn's own default, ``127.0.0.1,::1``). Under ``flask run`` no peer is trusted: wrap the app in Werkzeug's
``ProxyFix``, which rewrites the environ itself.

Two answers depend on it: the client's IP (for the per-IP limits) and the request's own origins (for the
``same-origin`` policy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from ..protocol.origins import normalize_origin

__all__ = ["ENVIRON_KEY", "NO_PROXIES", "TrustedProxies", "client_ip", "own_origins", "proxies_of"]

#: The environ key under which the server integration leaves the :class:`TrustedProxies` of the request's server.
ENVIRON_KEY = "wsgi_ws.proxies"

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose ``X-Forwarded-*`` headers are believed: addresses and networks (``10.0.0.0/8``), or ``*``."""

    def __init__(self, allowed: Iterable[str] = (), trust_unnamed_peers: bool = False) -> None:
        self._unnamed = trust_unnamed_peers  # a peer with no address: a Unix socket's (gunicorn trusts those)
        entries = [entry.strip() for entry in allowed if entry.strip()]
        self.allow_all = "*" in entries
        self._networks: list[_Network] = []
        for entry in entries:
            if entry != "*":
                try:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    continue  # gunicorn checks forwarded_allow_ips itself; what it let through but we cannot read trusts nobody
        self._answers: dict[str, bool] = {}

    @classmethod
    def from_gunicorn(cls, cfg: Any) -> TrustedProxies:
        """The proxies a gunicorn configuration trusts (its ``forwarded_allow_ips``)."""
        allowed = getattr(cfg, "forwarded_allow_ips", None) or ()
        return cls([allowed] if isinstance(allowed, str) else allowed, trust_unnamed_peers=True)

    def __bool__(self) -> bool:
        return self.allow_all or self._unnamed or bool(self._networks)

    def trusts(self, address: str) -> bool:
        """True if ``address`` (the peer's IP) is a trusted proxy."""
        if self.allow_all:
            return True
        if not address:
            return self._unnamed
        answer = self._answers.get(address)
        if answer is None:
            answer = _in_networks(address, self._networks)
            if len(self._answers) >= 4096:  # peers change: keep the cache small
                self._answers.clear()
            self._answers[address] = answer
        return answer


def _in_networks(address: str, networks: list[_Network]) -> bool:
    try:
        ip: _IPAddress = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)


#: Trusts nobody (``flask run``, unknown servers).
NO_PROXIES = TrustedProxies()


def proxies_of(environ: Mapping[str, Any]) -> TrustedProxies:
    """The trusted proxies the server integration left in ``environ`` (none if it left nothing)."""
    proxies: TrustedProxies = environ.get(ENVIRON_KEY, NO_PROXIES)
    return proxies


def _proxy_in_front(environ: Mapping[str, Any]) -> TrustedProxies | None:
    """The trusted proxies, when the peer of this request is one of them (its ``X-Forwarded-*`` are believed)."""
    proxies = proxies_of(environ)
    return proxies if proxies and proxies.trusts(str(environ.get("REMOTE_ADDR") or "")) else None


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def client_ip(environ: Mapping[str, Any]) -> str:
    """The client's IP: the peer's, or, from a trusted proxy, the nearest untrusted hop of ``X-Forwarded-For``."""
    peer = str(environ.get("REMOTE_ADDR") or "")
    proxies = _proxy_in_front(environ)
    if proxies is None:
        return peer
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if not forwarded:
        return peer
    hops = [hop.strip() for hop in str(forwarded).split(",") if hop.strip()]
    for hop in reversed(hops):  # the right end was added by the nearest proxy: walk back past the trusted ones
        if not proxies.trusts(hop):
            return hop
    return hops[0] if hops else peer


def own_origins(environ: Mapping[str, Any]) -> list[str]:
    """The origins this request reached the server with (normalized): its own, and a trusted proxy's client's."""
    scheme = str(environ.get("wsgi.url_scheme") or "http")
    host = str(environ.get("HTTP_HOST") or "")
    origins = []
    direct = normalize_origin(f"{scheme}://{host}")
    if direct is not None:
        origins.append(direct)
    if _proxy_in_front(environ) is not None:
        proto = environ.get("HTTP_X_FORWARDED_PROTO")
        forwarded_host = environ.get("HTTP_X_FORWARDED_HOST")
        port = environ.get("HTTP_X_FORWARDED_PORT")
        if proto or forwarded_host or port:
            scheme = _first(str(proto)).lower() if proto else scheme
            scheme = {"wss": "https", "ws": "http"}.get(scheme, scheme)
            host = _first(str(forwarded_host)) if forwarded_host else host
            if port and not host.endswith("]") and ":" not in host.rsplit("]", 1)[-1]:
                host = f"{host}:{_first(str(port))}"
            forwarded = normalize_origin(f"{scheme}://{host}")
            if forwarded is not None and forwarded not in origins:
                origins.append(forwarded)
    return origins
