"""One memory budget for everything the shadow side holds: copies' bodies in flight or waiting, response bodies
kept for comparison or the flow view, comparison pairs, noise prints and stored mismatches. Beyond it, new holders
are refused (copies are then dropped as `overload`), so the shadow side's memory stays bounded however many
services misbehave at once."""

from __future__ import annotations

import time
from collections.abc import Callable


class MemoryBudget:
    """Bytes held against a limit; plain counters, used from the event loop only."""

    __slots__ = ("limit", "held")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # may be changed at runtime; holders keep what they took
        self.held = 0

    def take(self, n: int) -> bool:
        """Hold `n` more bytes if they fit; False (nothing held) if they do not."""
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)


class RateBudget:
    """Work allowed per second (a token bucket holding at most one second's worth): comparison's CPU on the event
    loop stays a bounded share of it however many or large the pairs are. Past it, work is refused, not queued.
    `clock`: monotonic seconds (injectable for tests)."""

    __slots__ = ("rate", "tokens", "last", "clock", "refused")

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.clock = clock
        self.last = clock()
        self.refused = 0

    def take(self, n: int) -> bool:
        """Spend `n` units if the bucket holds them; False (nothing spent) if not. 0 is always allowed, and so is
        more than a second's worth when the bucket is full (it then runs into debt, repaid before the next)."""
        if n <= 0:
            return True
        now = self.clock()
        self.tokens = min(float(self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if n > self.tokens and self.tokens < self.rate:
            self.refused += 1
            return False
        self.tokens -= n
        return True
