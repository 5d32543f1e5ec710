"""Failed logins, rate-limited per client address (a token bucket each).

Each address may fail ``burst`` times at once and earns one more try every
``window_s / burst`` seconds. A blocked address gets 429 before its key is even
looked up, so guessing gains nothing; addresses that never fail are never slowed.
Runs on the event loop only, so it needs no lock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from .errors import RateLimited

MAX_ADDRESSES = 10_000  # beyond this the longest-quiet address is forgotten


class AuthLimiter:
    def __init__(self, burst: int, window_s: float) -> None:
        self.burst = float(burst)
        self.rate = burst / window_s  # tries earned per second
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, address: str) -> None:
        """RateLimited if ``address`` has no failure left to spend."""
        tokens = self._tokens(address, time.monotonic())
        if tokens < 1:
            raise RateLimited(max(1, math.ceil((1 - tokens) / self.rate)))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        self._buckets[address] = (self._tokens(address, now) - 1, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)

    def _tokens(self, address: str, now: float) -> float:
        tokens, stamp = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)
