"""The sans-I/O core: RFC 6455 (and RFC 7692 negotiation) without sockets, threads, gevent or any web framework.

Only the standard library and the ``websockets`` package's sans-I/O layer are imported here; a test imports this
package in a fresh interpreter and checks that. The blocking API (``wsgi_ws.connection``) drives it.

- :mod:`.handshake`: validate an upgrade request, build the 101 response
- :mod:`.origins`: the origin policy
- :mod:`.negotiation`: permessage-deflate negotiation
- :mod:`.session`: one accepted connection, bytes in and out (:class:`Session`)
- :mod:`.assembler`: frames to whole messages or bounded parts (:class:`Assembler`)
- :mod:`.frames`: every frame byte written or read by hand (header writer, fast path, frame splitter)
- :mod:`.state`: the connection lifecycle as a table-driven state machine
- :mod:`.errors`: the errors of this layer
"""

from __future__ import annotations

from .assembler import Assembler, Message, PartialMessage
from .errors import HandshakeRefused, ProtocolError, SessionClosed, UsageError
from .handshake import HandshakeRequest, accept_response, is_upgrade_request, validate_request
from .negotiation import negotiate
from .origins import OriginPolicy, check_pattern, normalize_origin
from .session import CloseCode, Session
from .state import ConnectionState, Event, InvalidTransition, Lifecycle

__all__ = [
    "Assembler",
    "CloseCode",
    "ConnectionState",
    "Event",
    "HandshakeRefused",
    "HandshakeRequest",
    "InvalidTransition",
    "Lifecycle",
    "Message",
    "OriginPolicy",
    "PartialMessage",
    "ProtocolError",
    "Session",
    "SessionClosed",
    "UsageError",
    "accept_response",
    "check_pattern",
    "is_upgrade_request",
    "negotiate",
    "normalize_origin",
    "validate_request",
]
