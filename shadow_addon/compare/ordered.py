"""A replay's pairs judged in the capture's order, once every copy has its outcome.

Live, each pair is judged as its answers come in: the judge re-judges it against the noise rates so far, and the
endpoint namer learns from the paths as they come. A replay (`mitmshadow replay`) compares each pair as its answers
come in too, but leaves the judging (the endpoint's name, the noise samples, the judge, the counts, the stored
mismatches and the report) to the end, in the order of the capture: the same capture then gives the same verdict
however the answers came in, and whether one process replayed it or several, each its part (`replayshards`),
whose pairs are merged by their position in the capture.

A replay reads its capture once: noise is learned from production's answers as they come, so a pair compared early
was compared with less noise known than there is at the end. A match stays a match whatever noise is learned (nothing
differs); every other pair is compared again when judged, with all the noise the capture taught (every process's, in a
split replay), if any was learned after it was compared, from its replies kept whole in a second file (`Replies`),
which only pairs that differ cost.

Pairs wait in memory only until every pair before them in the capture has its outcome (a few: the copies in flight);
they are then written to a file, read back in order at the end; their replies, when kept, go to the second file as
the pair is added, so what waits in memory is small whatever the bodies.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .reply import Reply
from .result import MATCH, Comparison

Naming = tuple[str, str, tuple[tuple[bytes, bytes], ...]]  # method, path, the header fields that name it (NAMED_BY)
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
    noise: int = 0  # fields of its Mapping's noise known when it was compared (a set that only grows)
    # The replies, whole, when the result is not a match: where they are in the `Replies` file while the pair is
    # written and read, restored to replies as it is read back (`CaptureOrder.compared`, `read`).
    replies: int | None = None
    production: Reply | None = None
    shadow: Reply | None = None


def pack(r: Reply | None) -> tuple[Any, ...] | None:
    """A reply as plain data: a Reply's caches are not for pickling (its parse marker is an object of this
    process)."""
    if r is None:
        return None
    return (r.status, list(r.headers), r.body, r.body_size, r.body_sha256, r.encoded)


def unpack(t: tuple[Any, ...] | None) -> Reply | None:
    return None if t is None else Reply(*t)


class Replies:
    """The replies of pairs that are not a match, whole, in a file beside the pairs' (`replies_path`) or an unnamed
    one: written as each pair is added, read back by their place in it."""

    def __init__(self, path: str | None = None, write: bool = True) -> None:
        mode = "wb+" if write else "rb"
        self._file: IO[bytes] = open(path, mode) if path else tempfile.TemporaryFile()  # noqa: SIM115
        self._end = 0  # where the next replies are written
        self._moved = False  # a `get` moved the file's position from the end

    def put(self, production: Reply | None, shadow: Reply | None) -> int:
        data = pickle.dumps((pack(production), pack(shadow)), protocol=pickle.HIGHEST_PROTOCOL)
        if self._moved:
            self._file.seek(self._end)
            self._moved = False
        self._file.write(data)
        at, self._end = self._end, self._end + len(data)
        return at

    def get(self, at: int) -> tuple[Reply | None, Reply | None]:
        self._moved = True
        self._file.seek(at)
        production, shadow = pickle.load(self._file)  # noqa: S301 - written by this replay's own processes
        return unpack(production), unpack(shadow)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def replies_path(path: str) -> str:
    return path + ".replies"


class CaptureOrder:
    """Pairs as compared (`add`), written in the capture's order once no pair before them is still waiting for an
    answer (`release`), read back in that order (`compared`). Held in an unnamed file, or at `path` for another
    process to read (`read`)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "wb") if path else tempfile.TemporaryFile()  # noqa: SIM115
        self.replies = Replies(replies_path(path) if path else None)
        self._waiting: list[tuple[int, int, Compared]] = []  # a heap by position
        self._seq = 0
        self._batch: list[tuple[Any, ...]] = []  # released pairs not yet written
        self.written = 0
        self.sampled = 0  # pairs with noise samples (none: the judge need not look for them first)

    @property
    def waiting(self) -> int:
        """Pairs held in memory behind one still waiting for an answer (a replay reads on only below WAITING)."""
        return len(self._waiting)

    def add(self, c: Compared) -> None:
        """A pair as compared; its replies (`production`, `shadow`), when given, go to the `Replies` file now."""
        if c.production is not None or c.shadow is not None:
            c.replies = self.replies.put(c.production, c.shadow)
            c.production = c.shadow = None
        self.sampled += bool(c.samples)
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
        self.replies.flush()

    def compared(self, replies: bool = True) -> Iterator[Compared]:
        """The pairs in the capture's order (after `finish`), each with its replies when they were kept (and
        `replies` asks for them)."""
        self._file.seek(0)
        yield from _read(self._file, self.replies if replies else None)

    def close(self) -> None:
        self._file.close()
        self.replies.close()


def _plain(c: Compared) -> tuple[Any, ...]:
    """A pair as plain data, which pickles in C (a dataclass with slots is restored by a Python function, ~10x
    slower); the common match as None."""
    result = None if c.result is MATCH or c.result == MATCH else c.result
    return (c.position, c.mapping, c.naming, c.summary, result, c.at, c.samples, c.noise, c.replies)


def _read(f: IO[bytes], replies: Replies | None) -> Iterator[Compared]:
    while True:
        try:
            batch = pickle.load(f)  # noqa: S301 - written by this replay's own processes
        except EOFError:
            return
        for t in batch:
            c = Compared(t[0], t[1], t[2], t[3], MATCH if t[4] is None else t[4], *t[5:])
            if c.replies is not None and replies is not None:
                c.production, c.shadow = replies.get(c.replies)
            yield c


def read(path: str, replies: bool = True) -> Iterator[Compared]:
    """Another process's pairs (its `CaptureOrder` at `path`, finished), in the capture's order, with their replies
    as `CaptureOrder.compared` gives them."""
    kept = Replies(replies_path(path), write=False) if replies else None
    try:
        with open(path, "rb") as f:
            yield from _read(f, kept)
    finally:
        if kept is not None:
            kept.close()


def merged(parts: Iterable[Iterator[Compared]]) -> Iterator[Compared]:
    """Several processes' pairs, each in the capture's order, as one sequence in that order."""
    return heapq.merge(*parts, key=lambda c: c.position)
