"""One memory budget for everything the shadow side holds: copies' bodies in flight or waiting, response bodies
kept for comparison or the flow view, and comparison pairs. Beyond it, new holders are refused (copies are then
dropped as `overload`), so the shadow side's memory stays bounded however many services misbehave at once."""

from __future__ import annotations


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
