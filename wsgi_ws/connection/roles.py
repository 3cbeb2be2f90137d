"""What the connection's helpers (keep-alive, expiry, the writer) need of it: the parts they share."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Closable", "Logged"]


class Logged(Protocol):
    """A connection the log can name."""

    @property
    def path(self) -> str:
        """The request path."""

    @property
    def peer(self) -> str:
        """The client's ``host:port``."""


class Closable(Logged, Protocol):
    """A connection a helper may close."""

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""

    def close(self, code: int = 1000, reason: str | bytes = "") -> None:
        """The closing handshake, as ``WebSocket.close``."""
