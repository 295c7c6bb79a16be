"""The noise learned for one Mapping: fields known to vary between two production answers to the same request."""

from __future__ import annotations

from typing import Any, Literal

from .fields import Path, Pattern, Trie

Kind = Literal["status", "body", "header", "path"]


class NoiseSet:
    """Fields known to vary between two production answers to the same request, for one mapping. Bounded: once
    full, new fields are not learned (a noisy field then shows as a mismatch: loud rather than hidden)."""

    __slots__ = ("capacity", "status", "body", "headers", "paths", "trie", "exact_keys", "general_keys")

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self.status = False
        self.body = False  # the body compared as text or by hash
        self.headers: set[str] = set()  # lower-case names
        self.paths: set[Pattern] = set()  # exact paths and generalised ones (None for an array index)
        self.trie = Trie(wildcard_indices=True)  # `paths` again, for `covers` in O(depth) and walks in O(1) a node
        # Path keys (see `prints.flatten`) of fields already learned or tried: a print's changed fields are named (an
        # O(depth) walk up) only once each, so learning stays linear in the body.
        self.exact_keys: set[int] = set()
        self.general_keys: set[int] = set()

    def __len__(self) -> int:
        return self.status + self.body + len(self.headers) + len(self.paths)

    @property
    def full(self) -> bool:
        return len(self) >= self.capacity

    def learn(self, kind: Kind, value: Any = None) -> bool:
        """Learn a field: `status`, `body`, `header` (a lower-case name) or `path` (a pattern, None for any array
        index). Returns whether it was added (False when already known or full)."""
        if self._knows(kind, value) or self.full:
            return False
        if kind == "status":
            self.status = True
        elif kind == "body":
            self.body = True
        elif kind == "header":
            self.headers.add(value)
        else:
            self.paths.add(value)
            self.trie.add(value)
        return True

    def learned(self) -> list[tuple[Kind, Any]]:
        """Every field learned, as `learn` takes them (to be learned by another process's set: `learn` each)."""
        out: list[tuple[Kind, Any]] = [("status", None)] if self.status else []
        out += [("body", None)] if self.body else []
        out += [("header", h) for h in sorted(self.headers)]
        return out + [("path", p) for p in sorted(self.paths, key=repr)]

    def _knows(self, kind: Kind, value: Any) -> bool:
        if kind == "status":
            return self.status
        if kind == "body":
            return self.body
        if kind == "header":
            return value in self.headers
        return value in self.paths

    def covers(self, path: Path) -> bool:
        """A path is noise when it, or a field above it, was learned (exactly, or with any array index)."""
        return self.trie.covers(path)
