"""Recoverable groups in Redis: each group's history in a Stream, its position given by one script per publish.

Per group two keys, in one cluster slot (the group is their hash tag): ``wsgi_ws:{<group>}:meta``, a hash with the
history's ``epoch`` and ``top`` offset, and ``wsgi_ws:{<group>}:history``, a Stream whose entry IDs are ``0-<offset>``.
One Lua script per publish, as Centrifugo does it, so positions and order agree everywhere: it counts the offset,
names a new epoch if the history was gone (and drops any stale stream), appends with ``XADD ... MAXLEN size``, sets
both keys to expire ``ttl`` after the last publish, and (one server) publishes the message marked with its position.
In a cluster the script cannot publish to the group's channel (another slot), so the message is ``SPUBLISH``-ed right
after; a worker that sees offsets out of order fills the gap from the stream and drops the late duplicate.

Reading is one script too: the epoch, the top, the oldest offset kept and the entries after an offset, all at once;
reading a group that has no history yet gives it one (an epoch at offset 0), so that a client that joined before the
first publish has a position to resume from.
"""

from __future__ import annotations

from typing import Any

import redis

from .backends import CHANNEL_PREFIX, decode
from .history import Entry, History, HistoryRead, Position, new_epoch

__all__ = ["Streams", "history_keys"]

_APPEND = """
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('hget', meta, 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('del', stream)
  redis.call('hset', meta, 'epoch', epoch, 'top', 0)
end
local top = redis.call('hincrby', meta, 'top', 1)
redis.call('xadd', stream, 'MAXLEN', ARGV[2], '0-' .. top, 'd', ARGV[1])
redis.call('pexpire', meta, ARGV[3])
redis.call('pexpire', stream, ARGV[3])
local reached = 0
if ARGV[6] == '1' then
  reached = redis.call('publish', ARGV[4], '@' .. epoch .. '-' .. top .. ' ' .. ARGV[1])
end
return {reached, epoch, top}
"""

_READ = """
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('hget', meta, 'epoch')
if not epoch then
  redis.call('del', stream)
  redis.call('hset', meta, 'epoch', ARGV[3], 'top', 0)
  redis.call('pexpire', meta, ARGV[4])
  return {ARGV[3], 0, 1, {}}
end
local top = tonumber(redis.call('hget', meta, 'top'))
local oldest = redis.call('xrange', stream, '-', '+', 'COUNT', 1)
local first = top + 1
if #oldest > 0 then first = tonumber(string.match(oldest[1][1], '%-(%d+)$')) end
return {epoch, top, first, redis.call('xrange', stream, '(0-' .. ARGV[1], '+', 'COUNT', ARGV[2])}
"""


def history_keys(group: str) -> list[str]:
    """The group's two keys: its history's meta hash and its stream (one hash tag, so one cluster slot)."""
    tag = "{" + group + "}"
    return [f"wsgi_ws:{tag}:meta", f"wsgi_ws:{tag}:history"]


class Streams:
    """The histories of recoverable groups on one Redis server or cluster (``client`` either kind)."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, cluster: bool = False) -> None:
        self._cluster = cluster
        #: The append script publishes the message too (one server; a cluster publishes it after).
        self.publishes = not cluster
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)

    def append(self, group: str, payload: bytes, history: History) -> tuple[int, Position]:
        """Keep ``payload`` (an :func:`~wsgi_ws.hub.backends.encode`-d message) and, on one server, publish it.

        Returns how many workers received it (0 in a cluster: publish it yourself, marked with the position) and its
        position. Raises ``redis.RedisError``.
        """
        args: list[bytes | str | int] = [
            payload,
            history.size,
            _milliseconds(history.ttl),
            CHANNEL_PREFIX + group,
            new_epoch(),
            "0" if self._cluster else "1",
        ]
        reached, epoch, top = self._append(keys=history_keys(group), args=args)
        return int(reached), Position(_text(epoch), int(top))

    def read(self, group: str, after: int, history: History) -> HistoryRead:
        """The group's history after offset ``after`` (at most ``history.size`` entries; a group without one gets an
        empty history); raises ``redis.RedisError``."""
        args: list[str | int] = [max(0, after), max(1, history.size), new_epoch(), _milliseconds(history.ttl)]
        epoch, top, first, rows = self._read(keys=history_keys(group), args=args)
        entries = []
        for entry_id, fields in rows:
            offset = int(_text(entry_id).rpartition("-")[2])
            message, sender = decode(_field(fields, b"d"))
            if isinstance(message, (str, bytes)):
                entries.append(Entry(offset, message, sender))
        return HistoryRead(_text(epoch), int(top), int(first), entries)


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _field(fields: list[Any], name: bytes) -> bytes:
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == name:
            return bytes(fields[index + 1])
    raise ValueError("a history entry without its message")
