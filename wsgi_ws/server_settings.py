"""The server's settings, written once: the defaults, the ``WSGI_WS_*`` environment variables, and their checks.

Both ways of starting the server read them from here: the project's ``gunicorn.conf.py`` (``gunicorn -c
gunicorn.conf.py app:app``) and ``python -m wsgi_ws serve app:app`` (whose flags win over the variables). A bad
value raises :class:`InvalidServerSetting` with a message that names the setting; the caller turns it into one line
and a non-zero exit. The WebSocket options (``WS_*``) are not here but in :mod:`wsgi_ws.options`.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_BIND",
    "ENVIRONMENT_PREFIX",
    "LOG_LEVELS",
    "SETTING_NAMES",
    "WORKER_CLASS",
    "InvalidServerSetting",
    "ServerSettings",
    "busy_address",
    "busy_message",
    "from_environment",
    "log_level",
    "tls_files",
    "whole_number",
]

#: The gevent-based WebSocket worker: one greenlet per connection.
WORKER_CLASS = "wsgi_ws.worker.WebSocketWorker"
#: Where the server listens unless told otherwise: loopback only.
DEFAULT_BIND = "127.0.0.1:5000"
#: gunicorn's log levels, quietest last.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: The prefix of the server's environment variables (``WSGI_WS_BIND``, ...).
ENVIRONMENT_PREFIX = "WSGI_WS_"
#: The server's settings, each read from ``WSGI_WS_<NAME>``; any other ``WSGI_WS_*`` variable is a typo.
SETTING_NAMES = (
    "BIND",
    "WORKERS",
    "WORKER_CONNECTIONS",
    "GRACEFUL_TIMEOUT",
    "CONTROL_SOCKET",
    "CERTFILE",
    "KEYFILE",
    "ACCESS_LOG",
    "LOG_LEVEL",
)


class InvalidServerSetting(ValueError):
    """A server setting that cannot be used; the message names it (``invalid server setting WSGI_WS_WORKERS: ...``)."""


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """The server's settings with the project's defaults; :meth:`gunicorn` gives them as gunicorn's settings.

    Build it with :func:`from_environment` (the ``WSGI_WS_*`` variables, checked) and change fields with
    ``dataclasses.replace``; the values are not checked again here.
    """

    #: Addresses to listen on, as gunicorn's ``bind`` takes them (``host:port``, ``unix:PATH``, ``fd://N``).
    bind: tuple[str, ...] = (DEFAULT_BIND,)
    #: Worker processes.
    workers: int = 1
    #: Connections one worker serves at once (WebSocket connections count too); beyond it 503.
    worker_connections: int = 1000
    #: Seconds open connections get to finish on shutdown or reload.
    graceful_timeout: int = 30
    #: Path of gunicorn 27's control socket; None (the default) disables it, so no two servers share one path.
    control_socket: str | None = None
    #: TLS certificate and key (both or neither): ``https://`` and ``wss://`` in gunicorn itself.
    certfile: str | None = None
    keyfile: str | None = None
    #: gunicorn's access log: ``-`` for stdout, a file, or None for none.
    access_log: str | None = "-"
    #: gunicorn's log level (one of :data:`LOG_LEVELS`); wsgi-ws's own lines join gunicorn's error log.
    log_level: str = "info"

    def gunicorn(self) -> dict[str, Any]:
        """These settings under gunicorn's names (``worker_class``, ``bind``, ``accesslog``, ...), ready for
        ``cfg.set(name, value)``: the WebSocket worker, and the control socket disabled unless a path was given."""
        settings: dict[str, Any] = {
            "worker_class": WORKER_CLASS,
            "bind": list(self.bind),
            "workers": self.workers,
            "worker_connections": self.worker_connections,
            "graceful_timeout": self.graceful_timeout,
            "control_socket_disable": self.control_socket is None,
            "accesslog": self.access_log,
            "loglevel": self.log_level,
        }
        if self.control_socket is not None:
            settings["control_socket"] = self.control_socket
        if self.certfile is not None:
            settings["certfile"], settings["keyfile"] = self.certfile, self.keyfile
        return settings


def whole_number(text: str, least: int) -> int:
    """``text`` as a whole number of at least ``least``; :class:`ValueError` saying why not (without a setting's
    name: the caller adds it)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"cannot read {text!r}: not a whole number") from None
    if value < least:
        raise ValueError(f"must be at least {least}, got {value}")
    return value


def log_level(text: str) -> str:
    """``text`` as one of gunicorn's :data:`LOG_LEVELS` (any case); :class:`ValueError` listing them if not."""
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def tls_files(certfile: str | None, keyfile: str | None, names: tuple[str, str]) -> tuple[str, str] | None:
    """The certificate and key when TLS is asked for (either given), None when neither is; ``names`` are what the
    caller calls them (``("WSGI_WS_CERTFILE", "WSGI_WS_KEYFILE")`` or the flags) for the message of the
    :class:`InvalidServerSetting` raised when one is missing or not a readable file."""
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile and os.path.isfile(certfile) and os.path.isfile(keyfile)):
        raise InvalidServerSetting(f"TLS needs both {names[0]} and {names[1]} naming readable files")
    return certfile, keyfile


def from_environment(environ: Mapping[str, str]) -> ServerSettings:
    """The settings the ``WSGI_WS_*`` variables of ``environ`` give (the defaults for those not set), checked.

    Raises :class:`InvalidServerSetting` for an unknown ``WSGI_WS_*`` name (with the nearest known one) or a bad value.
    """
    for name in sorted(environ):
        if name.startswith(ENVIRONMENT_PREFIX) and name[len(ENVIRONMENT_PREFIX) :] not in SETTING_NAMES:
            nearest = difflib.get_close_matches(name[len(ENVIRONMENT_PREFIX) :], SETTING_NAMES, n=1)
            hint = f"did you mean {ENVIRONMENT_PREFIX}{nearest[0]}? " if nearest else ""
            known = ", ".join(ENVIRONMENT_PREFIX + known for known in SETTING_NAMES)
            raise InvalidServerSetting(f"invalid server setting {name}: unknown setting; {hint}known: {known}")
    defaults = ServerSettings()

    def number(name: str, default: int, least: int) -> int:
        try:
            return whole_number(environ.get(ENVIRONMENT_PREFIX + name, str(default)), least)
        except ValueError as error:
            raise InvalidServerSetting(f"invalid server setting {ENVIRONMENT_PREFIX}{name}: {error}") from None

    workers = number("WORKERS", defaults.workers, least=1)
    worker_connections = number("WORKER_CONNECTIONS", defaults.worker_connections, least=1)
    graceful_timeout = number("GRACEFUL_TIMEOUT", defaults.graceful_timeout, least=0)
    tls = tls_files(environ.get("WSGI_WS_CERTFILE"), environ.get("WSGI_WS_KEYFILE"), ("WSGI_WS_CERTFILE", "WSGI_WS_KEYFILE"))
    access_log: str | None = environ.get("WSGI_WS_ACCESS_LOG", "-")
    if access_log == os.devnull:  # off: gunicorn then formats no access line per request (none would be kept anyway)
        access_log = None
    try:
        level = log_level(environ.get("WSGI_WS_LOG_LEVEL", defaults.log_level))
    except ValueError as error:
        raise InvalidServerSetting(f"invalid server setting WSGI_WS_LOG_LEVEL: {error}") from None
    return ServerSettings(
        bind=(environ.get("WSGI_WS_BIND", DEFAULT_BIND),),
        workers=workers,
        worker_connections=worker_connections,
        graceful_timeout=graceful_timeout,
        control_socket=environ.get("WSGI_WS_CONTROL_SOCKET") or None,
        certfile=tls[0] if tls else None,
        keyfile=tls[1] if tls else None,
        access_log=access_log,
        log_level=level,
    )


def busy_address(addresses: Iterable[str], environ: Mapping[str, str]) -> str | None:
    """The first of ``addresses`` (gunicorn binds) whose TCP port another socket holds, or None.

    gunicorn alone retries a busy port for 5 s and ends with "Can't connect", naming no setting; check before it
    starts instead. Unix sockets and ``fd://`` are not checked, nor anything when the listeners are inherited
    (``GUNICORN_PID`` on a re-exec, ``LISTEN_FDS`` from systemd).
    """
    if "GUNICORN_PID" in environ or "LISTEN_FDS" in environ:
        return None
    for address in addresses:
        host, colon, port = address.strip().rpartition(":")
        if not colon or not port.isdigit() or address.startswith(("unix:", "fd://")):
            continue
        host = host.strip("[]")
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return address
        finally:
            probe.close()
    return None


def busy_message(address: str, setting: str) -> str:
    """The line for a busy ``address`` (a ``host:port`` :func:`busy_address` returned), saying how to move it:
    ``setting`` is what precedes an address (``WSGI_WS_BIND=`` or ``--bind ``), given the next port up."""
    host, _, port = address.strip().rpartition(":")
    return f"{address} is already in use (another server?): stop it, or serve elsewhere with {setting}{host}:{int(port) + 1}"
