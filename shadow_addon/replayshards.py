"""A replay split over processes (`mitmshadow replay --jobs N`): which process plays which recorded request, and what
the processes hand each other through files in a directory of their own.

Each process reads the whole capture and plays the requests of its part: a request goes to the process its method
and path (as recorded) name, so production's answers to identical requests meet in one process, where noise is
learned from them as in one process. The processes keep pace with each other through the capture (`Progress`) and
share the window of copies under way. At the end each process but the first leaves its figures and the noise it
learned (`Result`) and its pairs as compared; the first adds the figures to its own, learns the others' noise, judges
every pair in the capture's order (`compare.ordered`: a pair that differed compared again with all the noise the
capture taught), reports and decides the verdict.

The files are pickles in a directory the parent process made for this run alone (mode 0700). A process that ends
without leaving what it owes is marked gone by the parent (`gone`), and whoever waits for it stops waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import flow

from .metrics import Metrics

logger = logging.getLogger("shadow")

POLL = 0.02  # s between looks for a file another process writes


class ShardGone(Exception):
    """A process of the replay ended without leaving what it owed (the parent process says so)."""


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 0 is the process that merges and reports
    count: int
    directory: str

    @classmethod
    def parse(cls, spec: str, directory: str) -> Shard:
        """`K/N` (0 <= K < N). Raises ValueError otherwise."""
        k, _, n = spec.partition("/")
        index, count = int(k), int(n)
        if not 0 <= index < count:
            raise ValueError(f"shard {spec!r}: expected K/N with 0 <= K < N")
        return cls(index, count, directory)

    @property
    def merges(self) -> bool:
        return self.index == 0

    def keeps(self, line: tuple[bytes, bytes] | None) -> bool:
        """Whether this process plays a recorded request of this method and path (None: a flow that is no HTTP
        request, which the first process reads)."""
        return (shard_of(*line, self.count) if line is not None else 0) == self.index

    def window(self, total: int) -> int:
        """This process's share of `total` copies under way at once per shadow service."""
        return max(1, -(-total // self.count))

    def label(self) -> str:
        return f"part {self.index + 1} of {self.count}"

    def path(self, kind: str, index: int | None = None) -> str:
        return os.path.join(self.directory, f"{kind}-{self.index if index is None else index}.pickle")

    def others(self) -> list[int]:
        return [k for k in range(self.count) if k != self.index]


def shard_of(method: bytes, path: bytes, count: int) -> int:
    """The process (0..count-1) that plays requests of this method and path: the same in every process and run."""
    return zlib.crc32(method.upper() + b" " + path) % count


@dataclass(slots=True)
class Result:
    """What a process leaves at the end for the first one: its figures and the replay's counts (its pairs as
    compared are in its `pairs_path`, judged by the first process with everyone's)."""

    metrics: Metrics
    counts: dict[str, Any] = field(default_factory=dict)  # Replay.tally(): read, copies, to_shadow, ...
    errors: int = 0  # errors it logged: no verdict then
    noise: dict[str, Any] = field(default_factory=dict)  # what it learned (`NoiseLearner.learned`)


def pairs_path(shard: Shard | None, index: int | None = None) -> str | None:
    """Where a process of a split replay leaves its pairs as compared (`compare.ordered`); None for the first
    process (and a replay by one), which keeps its own in an unnamed file."""
    if shard is None:
        return None
    k = shard.index if index is None else index
    return None if k == 0 else os.path.join(shard.directory, f"pairs-{k}")


class Reading:
    """One reading of a capture by `play`: it counts every entry read, its own or not (a flow's place in the
    capture, `position_of`, by which pairs are judged in order). In a process of a split replay its `keep` is the
    reader's filter (`capture.Keep`), which counts every entry and keeps this process's part; a replay by one
    process reads every entry as a flow, so it counts the flows (`mark`) and the reader need not find any request
    line."""

    def __init__(self, shard: Shard | None) -> None:
        self.shard = shard
        self.position = 0  # of the entry last read (1: the first)
        self.keep: Callable[[tuple[bytes, bytes] | None], bool] | None = self._keeps if shard is not None else None

    def _keeps(self, line: tuple[bytes, bytes] | None) -> bool:
        assert self.shard is not None
        self.position += 1
        if self.position == 1:  # past the start-up: a failure from here on is this process's own (`started`)
            with contextlib.suppress(OSError):  # only what the parent says of a failure depends on it
                open(reading_path(self.shard.directory, self.shard.index), "wb").close()
        return self.shard.keeps(line)

    def mark(self, f: flow.Flow) -> None:
        """Note the flow just read as at its place in the capture."""
        if self.keep is None:
            self.position += 1
        f.metadata[POSITION] = self.position


POSITION = "shadow_replay_position"  # a recorded flow's place in its capture, while the replay holds it


def position_of(f: flow.Flow, default: int) -> int:
    """The flow's place in its capture, as its reading marked it (`Reading.mark`), else `default`."""
    p = f.metadata.pop(POSITION, None)
    return p if isinstance(p, int) else default


def write(path: str, value: Any) -> None:
    """Write `value` where another process reads it: whole or not at all (a temporary file renamed)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def gone(directory: str, index: int) -> str:
    """The mark the parent leaves for a process that ended (whatever it left)."""
    return os.path.join(directory, f"gone-{index}")


async def read(shard: Shard, kind: str, index: int) -> Any:
    """What process `index` left as `kind`, once it is there. Raises ShardGone if that process ended without it, or
    if the parent process is gone."""
    path, mark, parent = shard.path(kind, index), gone(shard.directory, index), os.getppid()
    while True:
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)  # noqa: S301 - written by this run's own processes, in its own 0700 directory
        if os.path.exists(mark) or os.getppid() != parent:
            raise ShardGone(f"replay: process {index + 1} of {shard.count} ended without its {kind}")
        await asyncio.sleep(POLL)


@dataclass(slots=True)
class Parts:
    """What the first process gathers of the others once they have stopped (`gather`)."""

    counts: list[dict[str, Any]] = field(default_factory=list)  # each one's `Result.counts`
    pairs: list[str] = field(default_factory=list)  # each one's pairs as compared (`pairs_path`)
    noise: list[dict[str, Any]] = field(default_factory=list)  # what each one learned (`Result.noise`)
    errors: int = 0  # errors they logged, and processes that ended without their figures


async def gather(shard: Shard, metrics: Metrics) -> Parts:
    """Every other process's figures, its metrics added to `metrics`, once it has stopped."""
    parts = Parts()
    for k in shard.others():
        try:
            part: Result = await read(shard, "result", k)
        except ShardGone as e:
            logger.error("%s", e)
            parts.errors += 1
            continue
        metrics.add(part.metrics)
        parts.counts.append(part.counts)
        parts.noise.append(part.noise)
        parts.errors += part.errors
        if (pairs := pairs_path(shard, k)) is not None:
            parts.pairs.append(pairs)
    return parts


SPAN = 64  # entries of the capture the processes of a split replay may be apart
DONE = 2**62  # a process's position once it has read the whole capture


def progress_path(directory: str) -> str:
    return os.path.join(directory, "progress")


def make_progress(directory: str, count: int) -> None:
    """The file the processes publish their positions in (the parent makes it, before starting them)."""
    with open(progress_path(directory), "wb") as f:
        f.write(bytes(8 * count))


def reading_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"reading-{index}")


def started(directory: str, count: int) -> list[bool]:
    """Whether each process of a split replay read an entry of the capture: got past its start-up (options,
    Mappings, the capture's format). Read by the parent once they have ended."""
    return [os.path.exists(reading_path(directory, k)) for k in range(count)]


class Progress:
    """How far each process of a split replay has played the capture, in a file they all map. A process about to
    play its entry at position p says it is done with every entry before p (those between its own are the
    others'), and plays it once every other has got to p - SPAN: the shadow gets the capture's requests in its
    order to within SPAN entries (and the copies in flight), as from one process. The process holding the earliest
    entry not yet played never waits, so none waits for ever."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        with open(progress_path(shard.directory), "r+b") as f:
            self._map = mmap.mmap(f.fileno(), 8 * shard.count)

    def publish(self, position: int) -> None:
        _POSITION.pack_into(self._map, 8 * self.shard.index, position)

    def done(self) -> None:
        self.publish(DONE)

    def behind(self, position: int) -> list[int]:
        """The other processes that have not yet read to `position` - SPAN."""
        return [k for k in self.shard.others() if _POSITION.unpack_from(self._map, 8 * k)[0] < position - SPAN]

    def ahead(self, position: int) -> bool:
        """Whether another process has not yet read to `position` - SPAN."""
        return bool(self.behind(position))

    async def wait(self, position: int) -> None:
        """Until every other process has got to `position` - SPAN. Raises ShardGone if one of them ended first, or
        the parent process did."""
        parent = os.getppid()
        while laggards := self.behind(position):
            for k in laggards:
                if os.path.exists(gone(self.shard.directory, k)) or os.getppid() != parent:
                    raise ShardGone(f"replay: process {k + 1} of {self.shard.count} ended before the capture's end")
            await asyncio.sleep(PACE)

    def close(self) -> None:
        self._map.close()


PACE = 0.002  # s between looks at the other processes' positions
_POSITION = struct.Struct("<q")
