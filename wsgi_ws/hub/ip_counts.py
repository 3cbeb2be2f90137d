"""Open WebSockets per client IP across workers and machines: one Redis hash per IP, one Lua call per connection.

``wsgi_ws:ip:<scope>:<ip>`` maps each worker's id to its open connections from that IP. Admitting a connection is
one script: it adds up the fields of live workers (a worker is live while its presence alive key,
``wsgi_ws:alive:<worker>``, exists: see :mod:`wsgi_ws.hub.presence`), drops the fields of dead ones, and counts the
new connection only if the total is under the cap, so two workers admitting at once can never both take the last
slot. Releasing is another. A key lives a day after its last change, so the hashes of IPs never seen again go.

One Redis server: the script reads alive keys it is not given, which a Redis Cluster does not allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .presence import ALIVE_PREFIX

if TYPE_CHECKING:
    import redis

__all__ = ["KEY_PREFIX", "SharedCounts"]

#: A scope's count for one IP is at KEY_PREFIX + scope + ":" + ip.
KEY_PREFIX = "wsgi_ws:ip:"
_KEY_TTL_MS = 24 * 3600 * 1000

# KEYS[1] the IP's hash; ARGV: this worker, the cap, the alive keys' prefix, the key's expiry (ms).
# Returns -1 when admitted (and counted), else the connections open from that IP.
_ACQUIRE = """
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local worker = fields[i]
  if worker == ARGV[1] or redis.call('EXISTS', ARGV[3] .. worker) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], worker)
  end
end
if total >= tonumber(ARGV[2]) then return total end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return -1
"""
# KEYS[1] the IP's hash; ARGV: this worker, the key's expiry (ms).
_RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class SharedCounts:
    """This worker's side of the per-IP counts in Redis. ``client``: one Redis server's client; ``worker``: this
    worker's id, whose alive key the hub's presence heartbeat keeps (start it before the first :meth:`acquire`).

    Both calls raise ``redis.RedisError`` when Redis cannot answer: the caller decides what an outage means.
    """

    def __init__(self, client: redis.Redis, worker: str) -> None:
        self._worker = worker
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._release: Any = client.register_script(_RELEASE)

    def acquire(self, scope: str, ip: str, cap: int) -> int | None:
        """Count one more connection from ``ip`` if fewer than ``cap`` are open on all workers: None; else how many are."""
        answer = int(self._acquire(keys=[f"{KEY_PREFIX}{scope}:{ip}"], args=[self._worker, cap, ALIVE_PREFIX, _KEY_TTL_MS]))
        return None if answer < 0 else answer

    def release(self, scope: str, ip: str) -> None:
        """A connection from ``ip`` counted by :meth:`acquire` has ended."""
        self._release(keys=[f"{KEY_PREFIX}{scope}:{ip}"], args=[self._worker, _KEY_TTL_MS])
