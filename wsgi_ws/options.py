"""WebSocket options: one immutable, validated value, built from code, a mapping, Flask config or the environment.

Precedence, lowest first: the defaults, what ``gunicorn.conf.py`` (or any code) passes to :func:`configure`,
``WEBSOCKET_*`` keys of the Flask config, then ``WS_*`` environment variables. A bad value raises
:class:`~wsgi_ws.exceptions.InvalidOption` naming the setting, so a server stops at start-up, not at the
first connection.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import InvalidOption
from .protocol.origins import OriginPolicy, check_pattern

__all__ = ["CONFIG_PREFIX", "ENV_PREFIX", "HUB_OVERFLOW_POLICIES", "PER_SERVER", "WebSocketOptions", "configure", "current_options"]

ENV_PREFIX = "WS_"
CONFIG_PREFIX = "WEBSOCKET_"
_log = logging.getLogger("wsgi_ws")
_OFF_WORDS = {"", "0", "none", "off", "false", "no"}
#: Settings that act before a request is routed, or once per process: they cannot differ per route or middleware.
PER_SERVER = frozenset({"handshake_timeout", "hub_url", "hub_cluster", "hub_history_size", "hub_history_ttl", "hub_presence_heartbeat"})
#: What the hub does with a member whose backlog goes over ``hub_queue_limit`` or ``hub_queue_bytes``.
HUB_OVERFLOW_POLICIES = ("close", "drop-oldest", "latest")
_ON_WORDS = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class WebSocketOptions:
    """The settings of WebSocket connections (see the README's options table): a process's, a route's, a middleware's.

    Immutable and validated when made: a bad value raises :class:`~wsgi_ws.exceptions.InvalidOption` naming it.
    """

    #: Origins allowed to connect: ``same-origin`` (the request's own scheme, host and port), origins, ``*`` = all;
    #: others get HTTP 403 before any upgrade.
    allowed_origins: tuple[str, ...] = ("same-origin",)
    #: Refuse requests without an ``Origin`` header (non-browser clients) with 403.
    require_origin: bool = False
    #: Seconds without received data after which the server sends a ping; ``None`` turns pings off.
    keep_alive_interval: float | None = 120.0
    #: Seconds to wait for a pong (or any data) after a ping before the connection is closed; ``None`` = forever.
    keep_alive_timeout: float | None = None
    #: Bytes returned at most by one partial read.
    receive_buffer_size: int = 4096
    #: Largest message accepted, in bytes; over it the connection closes with 1009. ``None`` = no limit.
    max_message_size: int | None = 1024 * 1024
    #: Largest frame accepted, in bytes (``None`` = same as ``max_message_size``); over it, 1009.
    max_frame_size: int | None = None
    #: Seconds ``close()`` waits for the peer's close frame before closing TCP.
    close_timeout: float = 5.0
    #: Messages per second a connection may send (a token bucket of one second's worth); over it, close 1008. None = off.
    max_messages_per_second: float | None = None
    #: Bytes per second of messages a connection may send; over it, close 1008. None = off.
    max_bytes_per_second: int | None = None
    #: Seconds a send may wait, without progress, for a client that does not read; then TCP is cut (1006). None = forever.
    send_timeout: float | None = 60.0
    #: Open WebSockets allowed per client IP (per route if set there; across workers with ``hub_url``). None = no cap.
    max_connections_per_ip: int | None = None
    #: New WebSockets a second per client IP (a token bucket of one second's worth, at least 1); over it, 429. None = off.
    max_connection_rate_per_ip: float | None = None
    #: Seconds a client has to send its whole upgrade request.
    handshake_timeout: float = 10.0
    #: Subprotocols the server accepts, in its order of preference.
    subprotocols: tuple[str, ...] = field(default=())
    #: Negotiate permessage-deflate (RFC 7692) when the client offers it.
    compression: bool = False
    #: zlib compression level, 0 (none) to 9 (smallest, slowest).
    compression_level: int = 6
    #: LZ77 window, 9 to 15 bits, for what the server sends and (when the client allows it) what it receives.
    compression_window_bits: int = 12
    #: zlib memory level, 1 (least memory) to 9 (fastest).
    compression_memory_level: int = 5
    #: Reset the compression context after every message (less memory, worse ratio).
    compression_no_context_takeover: bool = False
    #: Broadcast hub backend: ``redis://host:port/db`` for Redis pub/sub across workers; None = in memory.
    hub_url: str | None = None
    #: ``hub_url`` is a Redis Cluster node: sharded pub/sub (Redis 7). None = find out from the server.
    hub_cluster: bool | None = None
    #: Messages a hub member may fall behind (waiting for its socket) before ``hub_overflow`` applies.
    hub_queue_limit: int = 1000
    #: Bytes of messages a hub member may fall behind before ``hub_overflow`` applies.
    hub_queue_bytes: int = 1024 * 1024
    #: A member over its backlog bounds: ``close`` (1013), ``drop-oldest`` messages, or keep only the ``latest``.
    hub_overflow: str = "close"
    #: Messages each hub group keeps for connections that resume (0 = off: at most once). Per group: Hub.set_history.
    hub_history_size: int = 0
    #: Seconds a group's history is kept after its last publish.
    hub_history_ttl: float = 300.0
    #: Seconds between a worker's presence heartbeats; a dead worker's entries go within twice this.
    hub_presence_heartbeat: float = 10.0

    def __post_init__(self) -> None:
        for spec in _SPECS.values():
            spec.check(getattr(self, spec.name))

    @functools.cached_property
    def origin_policy(self) -> OriginPolicy:
        """The origin policy of ``allowed_origins`` and ``require_origin`` (built once per options value)."""
        return OriginPolicy(self.allowed_origins, self.require_origin)

    def replace(self, *, label: str = "", **changes: Any) -> WebSocketOptions:
        """Return a copy with some settings changed (values may be given as strings, as in the environment).

        ``label`` prefixes the setting's name in error messages (for example ``route /upload: ``).
        """
        for name in changes:
            if name not in _SPECS:
                raise InvalidOption(label + name, unknown_setting(name))
        parsed = {name: _SPECS[name].parse(label + name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **parsed)

    def differences(self, other: WebSocketOptions) -> dict[str, Any]:
        """The settings whose value in ``other`` differs from this one's, with ``other``'s values."""
        return {f.name: getattr(other, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], prefix: str = "") -> WebSocketOptions:
        """Build options from a mapping, taking only keys that start with ``prefix`` (case-insensitive)."""
        return cls().merged(values, prefix)

    def merged(self, values: Mapping[str, Any], prefix: str = "") -> WebSocketOptions:
        """Return a copy with the settings found in ``values`` under ``prefix`` applied."""
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if not key.upper().startswith(prefix.upper()):
                continue
            name = key[len(prefix) :].lower()
            if name not in _SPECS:
                raise InvalidOption(key, unknown_setting(name, key[: len(prefix)]))
            changes[name] = _SPECS[name].parse(key, value)
        return dataclasses.replace(self, **changes)

    def with_environment(self, environ: Mapping[str, str] | None = None) -> WebSocketOptions:
        """Return a copy with the ``WS_*`` environment variables applied on top.

        A ``WS_*`` variable that names no setting raises :class:`InvalidOption` with the nearest name, as a misspelt
        keyword of :func:`configure` or key of the Flask config does: a typo must not start a server without it.
        """
        env = os.environ if environ is None else environ
        return self.merged({key: value for key, value in env.items() if key.startswith(ENV_PREFIX)}, ENV_PREFIX)


@dataclass(frozen=True)
class _Spec:
    """How one setting is parsed from text and checked."""

    name: str
    parse_text: Callable[[str], Any]
    validate: Callable[[Any], str | None]

    def parse(self, label: str, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = self.parse_text(value.strip())
            except ValueError as exc:
                raise InvalidOption(label, f"cannot read {value!r}: {exc}") from None
        value = _normalise(self.name, value)
        problem = self.validate(value)
        if problem:
            raise InvalidOption(label, f"{problem}, got {_shown(value)}")
        return value

    def check(self, value: Any) -> None:
        problem = self.validate(value)
        if problem:
            raise InvalidOption(self.name, f"{problem}, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value as an error message shows it: a list of words as the words (``'a', 'b'``), not a Python tuple."""
    if isinstance(value, tuple | list):
        return ", ".join(repr(item) for item in value) if value else "nothing"
    return repr(value)


def unknown_setting(name: str, prefix: str = "") -> str:
    """The message for a setting that does not exist: the nearest known name (spelt as the caller's ``prefix``
    spells them: ``WS_KEEP_ALIVE_INTERVAL``), and the list."""
    nearest = difflib.get_close_matches(name.lower(), list(_SPECS), n=1)
    hint = f"did you mean {(prefix + nearest[0].upper()) if prefix else nearest[0]!r}? " if nearest else ""
    return f"unknown setting; {hint}known: {', '.join(sorted(_SPECS))}"


def _seconds_or_off(text: str) -> float | None:
    return None if text.lower() in _OFF_WORDS else float(text)


def _bytes_or_off(text: str) -> int | None:
    return None if text.lower() in _OFF_WORDS else _size(text)


def _count_or_off(text: str) -> int | None:
    return None if text.lower() in _OFF_WORDS else int(text)


def _size(text: str) -> int:
    units = {"kib": 1024, "k": 1024, "mib": 1024**2, "m": 1024**2, "gib": 1024**3, "g": 1024**3}
    lowered = text.lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)].strip()) * factor)
    return int(lowered)


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in _ON_WORDS:
        return True
    if lowered in _OFF_WORDS:
        return False
    raise ValueError("expected true/false")


def _words(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace(" ", ",").split(",") if part.strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _positive_seconds_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not _is_number(value) or value < 0 or value == float("inf"):
        return "expected a number of seconds >= 0, or none/off"
    return None


def _positive_seconds(value: Any) -> str | None:
    if not _is_number(value) or value <= 0 or value == float("inf"):
        return "expected a number of seconds > 0"
    return None


def _positive_rate_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not _is_number(value) or value <= 0 or value == float("inf"):
        return "expected a number of messages per second > 0, or none/off"
    return None


def _positive_size_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return "expected a whole number of bytes > 0, or none/off"
    return None


def _positive_count_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return "expected a whole number > 0, or none/off"
    return None


def _buffer_size(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 64 * 1024 * 1024:
        return "expected a whole number of bytes from 1 to 64 MiB"
    return None


def _int_between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            return f"expected a whole number from {low} to {high}"
        return None

    return check


def _text_or_off(text: str) -> str | None:
    return None if text.lower() in _OFF_WORDS else text


def _redis_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        return "expected a Redis URL (redis://host:port/db, rediss://..., unix://...) or none"
    return None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _flag_or_auto(text: str) -> bool | None:
    return None if text.lower() in ("auto", "") else _flag(text)


def _bool_or_none(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "expected true, false or auto"


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}"

    return check


def _tokens(value: Any) -> str | None:
    if not isinstance(value, tuple) or not all(isinstance(item, str) and item for item in value):
        return "expected a list of non-empty names"
    return None


def _origins(value: Any) -> str | None:
    problem = _tokens(value)
    if problem:
        return problem
    for pattern in value:
        pattern_problem = check_pattern(pattern)
        if pattern_problem:
            return pattern_problem
    return None


_SPECS: dict[str, _Spec] = {
    spec.name: spec
    for spec in (
        _Spec("allowed_origins", _words, _origins),
        _Spec("require_origin", _flag, _bool),
        _Spec("keep_alive_interval", _seconds_or_off, _positive_seconds_or_none),
        _Spec("keep_alive_timeout", _seconds_or_off, _positive_seconds_or_none),
        _Spec("receive_buffer_size", _size, _buffer_size),
        _Spec("max_message_size", _bytes_or_off, _positive_size_or_none),
        _Spec("max_frame_size", _bytes_or_off, _positive_size_or_none),
        _Spec("close_timeout", float, _positive_seconds),
        _Spec("max_messages_per_second", _seconds_or_off, _positive_rate_or_none),
        _Spec("max_bytes_per_second", _bytes_or_off, _positive_size_or_none),
        _Spec("send_timeout", _seconds_or_off, _positive_seconds_or_none),
        _Spec("max_connections_per_ip", _count_or_off, _positive_count_or_none),
        _Spec("max_connection_rate_per_ip", _seconds_or_off, _positive_rate_or_none),
        _Spec("handshake_timeout", float, _positive_seconds),
        _Spec("subprotocols", _words, _tokens),
        _Spec("compression", _flag, _bool),
        _Spec("compression_level", int, _int_between(0, 9)),
        _Spec("compression_window_bits", int, _int_between(9, 15)),
        _Spec("compression_memory_level", int, _int_between(1, 9)),
        _Spec("compression_no_context_takeover", _flag, _bool),
        _Spec("hub_url", _text_or_off, _redis_url),
        _Spec("hub_cluster", _flag_or_auto, _bool_or_none),
        _Spec("hub_queue_limit", int, _int_between(1, 10_000_000)),
        _Spec("hub_queue_bytes", _size, _int_between(1, 1 << 40)),
        _Spec("hub_overflow", str.lower, _choice(HUB_OVERFLOW_POLICIES)),
        _Spec("hub_history_size", int, _int_between(0, 10_000_000)),
        _Spec("hub_history_ttl", float, _positive_seconds),
        _Spec("hub_presence_heartbeat", float, _positive_seconds),
    )
}


def _normalise(name: str, value: Any) -> Any:
    """Accept lists where tuples are stored, and 0 for 'off' in the optional numbers."""
    if name in ("allowed_origins", "subprotocols") and isinstance(value, Iterable) and not isinstance(value, str):
        return tuple(value)
    if name in ("keep_alive_interval", "keep_alive_timeout", "send_timeout") and _is_number(value) and value == 0:
        return None
    return value


_explicit: dict[str, Any] = {}
_current: WebSocketOptions | None = None


def configure(options: WebSocketOptions | None = None, **settings: Any) -> WebSocketOptions:
    """Set this process's WebSocket options (``WS_*`` environment variables still win); returns them.

    Call it from ``gunicorn.conf.py`` so a bad value stops start-up with a message naming the setting.
    """
    global _current
    if options is not None:
        _explicit.clear()
        _explicit.update({f.name: getattr(options, f.name) for f in dataclasses.fields(options)})
    _explicit.update(settings)
    _current = WebSocketOptions().replace(**_explicit).with_environment()
    return _current


def current_options() -> WebSocketOptions:
    """The options in force: what :func:`configure` set, or the defaults with the environment applied."""
    global _current
    if _current is None:
        _current = WebSocketOptions().with_environment()
    return _current
