"""A replay's pairs judged in the capture's order, once every copy has its outcome.

Live, each pair is judged as its answers come in: the judge re-judges it against the noise rates so far, and the
endpoint namer learns from the paths as they come. A replay (`mitmshadow replay`) compares each pair as its answers
come in too, but leaves the judging (the endpoint's name, the noise samples, the judge, the counts, the stored
mismatches and the report) to the end, in the order of the capture: the same capture then gives the same verdict
however the answers came in, and whether one process replayed it or several, each its part (`replayshards`),
whose pairs are merged by their position in the capture.

Pairs wait in memory only until every pair before them in the capture has its outcome (a few: the copies in flight);
they are then written to a file, read back in order at the end. A pair's replies are kept only when it is not a
match, and then as the store keeps them (a preview of each body).
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .reply import Reply
from .result import Comparison

Naming = tuple[str, str, tuple[tuple[bytes, bytes], ...]]  # method, path, request header fields
# Pairs held in memory behind one that waits for its answer (up to the copy timeout) before the replay stops reading
# the capture until it comes: what a slow answer can make wait is bounded, not the pairs of its timeout.
WAITING = 4096
BATCH = 256  # pairs pickled together: one pickle per pair costs more in its framing than in the pair


@dataclass(slots=True)
class Compared:
    """One pair as compared, to be judged at its place in the capture."""

    position: int  # in the capture
    mapping: str
    naming: Naming  # what the endpoint's name is made of
    summary: dict[str, Any]
    result: Comparison  # as compared, before the judge
    at: float  # when it was compared (the stored mismatch's time)
    samples: list[list[str]] = field(default_factory=list)  # noise samples taken for this pair, in order
    production: tuple[Any, ...] | None = None  # `pack`ed replies, kept when the result is not a match
    shadow: tuple[Any, ...] | None = None


def pack(r: Reply | None, preview: int) -> tuple[Any, ...] | None:
    """A reply as stored with a mismatch (its body cut to `preview` bytes), as plain data: a Reply's caches are
    not for pickling (its parse marker is an object of this process)."""
    if r is None:
        return None
    body = r.body if r.body is None or len(r.body) <= preview else r.body[:preview]
    return (r.status, list(r.headers), body, r.body_size, r.body_sha256, r.encoded)


def unpack(t: tuple[Any, ...] | None) -> Reply | None:
    return None if t is None else Reply(*t)


class CaptureOrder:
    """Pairs as compared (`add`), written in the capture's order once no pair before them is still waiting for an
    answer (`release`), read back in that order (`compared`). Held in an unnamed file, or at `path` for another
    process to read (`read`)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "wb") if path else tempfile.TemporaryFile()  # noqa: SIM115
        self._waiting: list[tuple[int, int, Compared]] = []  # a heap by position
        self._seq = 0
        self._batch: list[tuple[Any, ...]] = []  # released pairs not yet written
        self.written = 0

    @property
    def waiting(self) -> int:
        """Pairs held in memory behind one still waiting for an answer (a replay reads on only below WAITING)."""
        return len(self._waiting)

    def add(self, c: Compared) -> None:
        self._seq += 1
        heapq.heappush(self._waiting, (c.position, self._seq, c))

    def release(self, below: int | None) -> None:
        """Write the pairs before position `below` (None: all of them): no pair before them is still waiting."""
        waiting, batch = self._waiting, self._batch
        while waiting and (below is None or waiting[0][0] < below):
            batch.append(_plain(heapq.heappop(waiting)[2]))
            self.written += 1  # out of memory's hold (the batch is small and bounded)
            if len(batch) >= BATCH:
                self._write()

    def _write(self) -> None:
        if self._batch:
            pickle.dump(self._batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch.clear()  # in place: `release` goes on appending to this list

    def finish(self) -> None:
        """Every pair written, the file complete (for `compared`, or another process)."""
        self.release(None)
        self._write()
        self._file.flush()

    def compared(self) -> Iterator[Compared]:
        """The pairs in the capture's order (after `finish`)."""
        self._file.seek(0)
        yield from _read(self._file)

    def close(self) -> None:
        self._file.close()


_MATCH = Comparison("match")


def _plain(c: Compared) -> tuple[Any, ...]:
    """A pair as plain data, which pickles in C (a dataclass with slots is restored by a Python function, ~10x
    slower); the common match as None."""
    result = None if c.result == _MATCH else c.result
    return (c.position, c.mapping, c.naming, c.summary, result, c.at, c.samples, c.production, c.shadow)


def _read(f: IO[bytes]) -> Iterator[Compared]:
    while True:
        try:
            batch = pickle.load(f)  # noqa: S301 - written by this replay's own processes
        except EOFError:
            return
        for t in batch:
            yield Compared(t[0], t[1], t[2], t[3], _MATCH if t[4] is None else t[4], *t[5:])


def read(path: str) -> Iterator[Compared]:
    """Another process's pairs (its `CaptureOrder` at `path`, finished), in the capture's order."""
    with open(path, "rb") as f:
        yield from _read(f)


def merged(parts: Iterable[Iterator[Compared]]) -> Iterator[Compared]:
    """Several processes' pairs, each in the capture's order, as one sequence in that order."""
    return heapq.merge(*parts, key=lambda c: c.position)
