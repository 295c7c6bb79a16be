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


class Tee:
    """A `request.stream` / `response.stream` function that passes chunks through and keeps up to `limit` bytes of
    them, each kept byte held against the memory budget: streamed bodies kept for a copy or a comparison count as
    every other holder does. Past the limit (`over`) or the budget (`refused`) what was kept is freed at once."""

    __slots__ = ("limit", "budget", "kept", "over", "refused")

    def __init__(self, limit: int, budget: MemoryBudget) -> None:
        self.limit = limit
        self.budget = budget
        self.kept: bytearray | None = bytearray()
        self.over = False
        self.refused = False

    def __call__(self, chunk: bytes) -> bytes:
        if self.kept is not None:
            if len(self.kept) + len(chunk) > self.limit:
                self.over = True
                self.release()
            elif not self.budget.take(len(chunk)):
                self.refused = True
                self.release()
            else:
                self.kept += chunk
        return chunk

    def take(self) -> bytes | None:
        """The whole body, its bytes no longer held here (the caller's holder takes them); None when it outgrew the
        limit or the budget."""
        body = None if self.kept is None else bytes(self.kept)
        self.release()
        return body

    def release(self) -> None:
        if self.kept is not None:
            self.budget.release(len(self.kept))
            self.kept = None


class TimeBudget:
    """A share of the event loop's time for one kind of work (comparison): the time the work really took is
    spent from a bucket that refills at `share` seconds per second and holds at most `share` x `burst`. Work may
    start while the bucket is above zero (so one item may overdraw it by its own cost, then repaid); below it,
    work is refused, never queued. Measured rather than estimated, so it holds on a slow or busy CPU too.
    `clock`: monotonic seconds (injectable for tests)."""

    __slots__ = ("share", "cap", "tokens", "last", "clock", "refused")

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic, burst: float = 1.0) -> None:
        self.share = share
        self.cap = share * burst
        self.tokens = self.cap
        self.clock = clock
        self.last = clock()
        self.refused = 0

    def allows(self) -> bool:
        """Whether work may start now; counts a refusal when not."""
        if self.share == float("inf"):
            return True  # unlimited (an offline replay)
        now = self.clock()
        self.tokens = min(self.cap, self.tokens + (now - self.last) * self.share)
        self.last = now
        if self.tokens > 0:
            return True
        self.refused += 1
        return False

    def spend(self, seconds: float) -> None:
        self.tokens -= seconds
