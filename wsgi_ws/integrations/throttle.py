"""Log lines that could flood: at most one per key (a client IP, or one for all) every few seconds, with a count.

A client refused a thousand times a second, or a port scanned by a thousand TLS probes, must not write a thousand
lines: the first refusal of each interval is logged and says how many were held back since the line before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["INTERVAL", "Throttle"]

#: Seconds between two lines about the same key; what happens in between is counted in the next line.
INTERVAL = 10.0


class Throttle:
    """Decides which events get a log line: the first for each key in every ``interval`` seconds.

    Thread-safe. At most ``max_keys`` keys are remembered (then the quiet ones are forgotten, so a key may get a line
    a little early, never a flood).
    """

    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic, max_keys: int = 4096) -> None:
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._keys: dict[Hashable, tuple[float, int]] = {}  # key: (when its next line may go, events held back)
        #: Events noted since the start, logged or not.
        self.count = 0

    def note(self, key: Hashable = None) -> int | None:
        """An event for ``key`` happened: the number of its events held back since its last line if this one is to be
        logged now (0 for the first), or None to stay quiet (it is counted for the next line)."""
        now = self._clock()
        with self._lock:
            self.count += 1
            next_at, held = self._keys.get(key, (0.0, 0))
            if now < next_at:
                self._keys[key] = (next_at, held + 1)
                return None
            if key not in self._keys and len(self._keys) >= self._max_keys:
                self._forget(now)
            self._keys[key] = (now + self.interval, 0)
            return held

    def _forget(self, now: float) -> None:
        """Drop the keys whose interval is over (their held-back counts are lost: a line for them went out already)."""
        for key in [key for key, (next_at, _) in self._keys.items() if next_at <= now]:
            del self._keys[key]
        if len(self._keys) >= self._max_keys:
            self._keys.clear()
