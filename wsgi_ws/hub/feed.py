"""The JSON envelope of a resumable feed, as the sample's ``/feed/<group>`` and ``static/wsgi-ws.js`` speak it.

::

    recovery = hub.join(ws, group, since=request.args.get("since"), render=feed.render, announce=feed.announce)

The client first gets ``{"type": "joined", "recovered": true|false, "missed": N, "position": "..."}``, then every
message as ``{"type": "message", "position": "...", "data": ...}`` (text as a string; binary as base64 in
``"base64"`` instead of ``"data"``). Another ``joined`` with ``recovered: false`` may come later: messages were lost
on the way (Redis restarted without its data). Positions are opaque: keep the last and send it back as ``since``.
"""

from __future__ import annotations

import base64
import json

from .history import Delivery, Recovery

__all__ = ["announce", "render"]


def render(delivery: Delivery) -> str:
    """A message of the group, with its position, as one JSON text."""
    message = delivery.message
    if isinstance(message, str):
        return json.dumps({"type": "message", "position": delivery.position.token(), "data": message}, ensure_ascii=False)
    encoded = base64.b64encode(message).decode("ascii")
    return json.dumps({"type": "message", "position": delivery.position.token(), "base64": encoded})


def announce(recovery: Recovery) -> str:
    """What the join recovered, sent before the first message."""
    position = recovery.position.token() if recovery.position is not None else ""
    return json.dumps({"type": "joined", "recovered": recovery.recovered, "missed": recovery.missed, "position": position})
