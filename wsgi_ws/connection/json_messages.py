"""JSON messages: ``ws.send_json(data)`` and ``ws.receive_json()``, as Starlette has them.

A mixin of :class:`~wsgi_ws.connection.websocket.WebSocket`, built on its ``send``, ``receive`` and ``close``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidMessage

if TYPE_CHECKING:
    from ..protocol.assembler import Message

__all__ = ["JSONMessages"]

_COMPACT = (",", ":")


class JSONMessages:
    """``send_json`` and ``receive_json`` for a connection that has ``send``, ``receive`` and ``close``."""

    __slots__ = ()

    if TYPE_CHECKING:

        def send(self, message: Message | bytearray | memoryview, binary: bool | None = None, *, compress: bool = True) -> None: ...

        def receive(self, timeout: float | None = None) -> Message | None: ...

        def close(self, code: int = 1000, reason: str | bytes = "") -> None: ...

    def send_json(self, data: Any, *, binary: bool = False) -> None:
        """Send ``data`` as one JSON text message (compact, non-ASCII as is); ``binary=True``: its UTF-8 as binary.

        ``TypeError`` for what ``json.dumps`` cannot encode, before anything is sent.
        """
        text = json.dumps(data, separators=_COMPACT, ensure_ascii=False)
        self.send(text.encode() if binary else text)

    def receive_json(self, timeout: float | None = None, *, invalid_close_code: int | None = None) -> Any:
        """The next message, text or binary (UTF-8), parsed as JSON.

        JSON's ``null`` comes back as None, so the end of the connection cannot: once the connection has closed this
        raises :class:`~wsgi_ws.ConnectionClosed` (``close_code`` says why). A message that is not JSON raises
        :class:`~wsgi_ws.InvalidMessage`; with ``invalid_close_code`` (1007, "invalid payload data", is RFC 6455's code
        for data that does not fit the message's type) the connection is first closed with that code and a reason.
        ``TimeoutError`` after ``timeout`` seconds.
        """
        message = self.receive(timeout)
        if message is None:
            self.receive()  # the connection has closed: a further receive raises ConnectionClosed
            raise AssertionError("receive() returned None twice")  # pragma: no cover - it raises
        try:
            return json.loads(message)
        except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
            problem = f"invalid JSON: {error}"[:120]
            if invalid_close_code is not None:
                self.close(invalid_close_code, problem)
            raise InvalidMessage(problem) from None
