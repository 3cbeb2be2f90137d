"""Completing the opening handshake of an accepted request: negotiation, the 101 response, a new session."""

from __future__ import annotations

import logging

from ..exceptions import InvalidArgument, from_protocol
from ..options import WebSocketOptions
from ..protocol.errors import ProtocolError
from ..protocol.handshake import HandshakeRequest, accept_response
from ..protocol.negotiation import negotiate
from ..protocol.session import Session

__all__ = ["open_session"]

#: The sessions' logger, looked up once (``logging.getLogger`` takes a lock: a few percent of a handshake).
_PROTOCOL_LOG = logging.getLogger("wsgi_ws.protocol")


def open_session(
    request: HandshakeRequest, options: WebSocketOptions, subprotocol: str | None, headers: tuple[tuple[str, str], ...]
) -> tuple[bytes, Session, str | None]:
    """The bytes of the 101 response, the session they start and the subprotocol chosen.

    permessage-deflate is on when the options allow it and the client offers it. ``subprotocol`` None chooses the
    first of the options' ``subprotocols`` the client offered. Raises :class:`~wsgi_ws.exceptions.InvalidArgument`
    for a subprotocol the client did not offer or a header with a line break.
    """
    if subprotocol is None:
        subprotocol = request.select_subprotocol(options.subprotocols)
    elif subprotocol not in request.subprotocols:
        raise InvalidArgument(f"subprotocol {subprotocol!r} was not offered by the client (offered: {list(request.subprotocols)})")
    negotiated = None
    if options.compression:
        negotiated = negotiate(
            request.extensions,
            window_bits=options.compression_window_bits,
            level=options.compression_level,
            memory_level=options.compression_memory_level,
            no_context_takeover=options.compression_no_context_takeover,
        )
    if negotiated is not None:
        headers = (("Sec-WebSocket-Extensions", negotiated[0]), *headers)
    try:
        response = accept_response(request.key, subprotocol, headers)
    except ProtocolError as exc:
        raise from_protocol(exc) from None
    session = Session(options.max_message_size, options.max_frame_size, [negotiated[1]] if negotiated else None, _PROTOCOL_LOG)
    return response, session, subprotocol
