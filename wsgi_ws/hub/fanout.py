"""One fan-out pass over a run of one group's messages: each member gets them shaped as its join asked, framed for
its connection's kind, every frame built once and every joined write shared by the members that can share it."""

from __future__ import annotations

from .history import Position
from .member import Member
from .outgoing import OWN_COMPRESSION, Format, FrameKind, Outgoing, shape
from .recovery import Item

__all__ = ["join_frames", "offer_run"]


def offer_run(members: dict[Member, None] | None, group: str, run: list[Item]) -> None:
    """Offer a run of ``group``'s items, in order, to its ``members``: shaped once per format, joined once per kind."""
    if not members:
        return
    senders = {item.sender for item in run if item.sender}
    shaped: dict[Format | None, list[Outgoing]] = {}
    blobs: dict[tuple[FrameKind, Format | None], bytes | None] = {}
    for member in list(members):
        if member.holding:
            held = member.holding.get(group)
            if held is not None:  # resuming: sent once its history is
                held.extend(run)
                continue
        fmt = member.formats.get(group) if member.formats else None
        kind = member.kind
        mark = member.resumed_at.get(group) if member.resumed_at else None
        if mark is not None or (senders and member.token in senders):
            newer = [item for item in run if not _sent_before(item, mark)]
            if mark is not None and any(item.position is not None for item in newer):
                del member.resumed_at[group]  # the stream has gone past what the history sent: no more to skip
            own = shape([item for item in newer if item.sender != member.token], fmt)
            if own:
                member.offer(own, join_frames(own, kind))
            continue
        items = shaped.get(fmt)
        if items is None:
            items = shaped[fmt] = shape(run, fmt)
        if not items:
            continue
        key = (kind, fmt)
        if key in blobs:
            blob = blobs[key]
        else:
            blob = blobs[key] = join_frames(items, kind)
        member.offer(items, blob)


def _sent_before(item: Item, mark: Position | None) -> bool:
    """True for a message a member that just resumed got from the history already."""
    position = item.position
    return mark is not None and position is not None and position.epoch == mark.epoch and position.offset <= mark.offset


def join_frames(items: list[Outgoing], kind: FrameKind) -> bytes | None:
    """The frames of ``items`` for connections of ``kind``, as one write; None for connections that compress themselves."""
    if kind == OWN_COMPRESSION:
        return None
    if len(items) == 1:
        return items[0].frame_for(kind)
    return b"".join([item.frame_for(kind) for item in items])
