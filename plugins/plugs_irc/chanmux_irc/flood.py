"""Flood control: a token bucket per connection, so the server never kills us for flooding.

The bucket holds up to `burst` tokens and refills at `rate` tokens a second. A message line
waits for a whole token; a control line (PONG, JOIN, ...) takes one without waiting, so it is
never held up but still slows the messages that follow, as the server would count it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio


class TokenBucket:
    """`burst` lines at once, then `rate` lines a second; `rate <= 0` switches it off."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float] | None = None) -> None:
        self.burst = max(1, burst)
        self.rate = rate
        self._clock = clock or anyio.current_time
        self.tokens = float(self.burst)
        self._stamp: float | None = None

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self) -> None:
        now = self._clock()
        if self._stamp is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until a whole token is available (0 when one is)."""
        if not self.enabled:
            return 0.0
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def consume(self) -> None:
        """Take a token now, even if that leaves the bucket in debt."""
        if self.enabled:
            self._refill()
            self.tokens = max(self.tokens - 1, -10.0 * self.burst)

    async def take(self) -> None:
        """Wait until a token is available, then take it."""
        while True:
            wait = self.delay()
            if wait <= 0:
                self.tokens -= 1
                return
            await anyio.sleep(wait if math.isfinite(wait) else 1.0)


__all__ = ["TokenBucket"]
