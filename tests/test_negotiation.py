"""permessage-deflate negotiation (RFC 7692 §7), without sockets: which offer is accepted, which declined."""

from __future__ import annotations

import pytest
from websockets.headers import parse_extension

from wsgi_ws.options import WebSocketOptions
from wsgi_ws.protocol.negotiation import Offer, negotiate

pytestmark = pytest.mark.unit


def offers(header: str) -> tuple[Offer, ...]:
    return tuple(parse_extension(header))


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        ("permessage-deflate; client_max_window_bits=10", "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10"),
        ("permessage-deflate; server_no_context_takeover", "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"),
        ("permessage-deflate; client_no_context_takeover", "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"),
        ("x-webkit-deflate-frame, permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        ("permessage-deflate; server_max_window_bits=8, permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
    ],
)
def test_negotiation_accepts_the_first_offer_it_can_honour(offer: str, response: str) -> None:
    negotiated = negotiate(offers(offer))
    assert negotiated is not None and negotiated[0] == response


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=20",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "x-webkit-deflate-frame",
    ],
)
def test_bad_offers_are_declined_not_failed(offer: str) -> None:
    assert negotiate(offers(offer)) is None


def test_compression_is_off_by_default() -> None:
    assert WebSocketOptions().compression is False


def test_no_context_takeover_option_is_imposed() -> None:
    negotiated = negotiate(offers("permessage-deflate"), no_context_takeover=True)
    assert negotiated is not None and "server_no_context_takeover" in negotiated[0]
