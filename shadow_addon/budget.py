"""Bytes held across all shadow services, under one limit."""

from __future__ import annotations


class MemoryBudget:
    """`take` reserves bytes if they fit under `limit`; every successful `take` is matched by a `release`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)
